variable "name" {
  type = string
}

variable "resource_group_name" {
  type = string
}

variable "location" {
  type = string
}

variable "sku" {
  type = string
}

variable "purge_protection" {
  type = bool
}

variable "private_endpoint_subnet_id" {
  type    = string
  default = null
}

variable "tags" {
  type = map(string)
}

data "azurerm_client_config" "current" {}

resource "azurerm_key_vault" "main" {
  name                          = var.name
  resource_group_name           = var.resource_group_name
  location                      = var.location
  tenant_id                     = data.azurerm_client_config.current.tenant_id
  sku_name                      = var.sku
  purge_protection_enabled      = var.purge_protection
  soft_delete_retention_days    = 90
  enable_rbac_authorization     = true
  public_network_access_enabled = var.private_endpoint_subnet_id == null
  tags                          = var.tags
}

resource "azurerm_private_endpoint" "keyvault" {
  count               = var.private_endpoint_subnet_id == null ? 0 : 1
  name                = "pe-${var.name}"
  resource_group_name = var.resource_group_name
  location            = var.location
  subnet_id           = var.private_endpoint_subnet_id
  tags                = var.tags

  private_service_connection {
    name                           = "psc-${var.name}"
    private_connection_resource_id = azurerm_key_vault.main.id
    subresource_names              = ["vault"]
    is_manual_connection           = false
  }
}

output "uri" {
  value = azurerm_key_vault.main.vault_uri
}

locals {
  name = "quikapp-${var.environment}"
  tags = merge(var.tags, { project = "quikapp", environment = var.environment })
}

resource "azurerm_resource_group" "main" {
  name     = "rg-${local.name}"
  location = var.location
  tags     = local.tags
}

module "monitoring" {
  source              = "./modules/monitoring"
  name                = local.name
  resource_group_name = azurerm_resource_group.main.name
  location            = var.location
  retention_days      = var.log_retention_days
  tags                = local.tags
}

module "network" {
  source              = "./modules/network"
  name                = local.name
  resource_group_name = azurerm_resource_group.main.name
  location            = var.location
  address_space       = var.vnet_cidr
  tags                = local.tags
}

module "acr" {
  source                     = "./modules/acr"
  name                       = replace("acr${local.name}", "-", "")
  resource_group_name        = azurerm_resource_group.main.name
  location                   = var.location
  sku                        = var.acr_sku
  georeplication_locations   = var.acr_georeplication_locations
  private_endpoint_subnet_id = var.private_endpoints ? module.network.private_endpoint_subnet_id : null
  tags                       = local.tags
}

module "keyvault" {
  source                     = "./modules/keyvault"
  name                       = "kv-${local.name}"
  resource_group_name        = azurerm_resource_group.main.name
  location                   = var.location
  sku                        = var.keyvault_sku
  purge_protection           = var.purge_protection
  private_endpoint_subnet_id = var.private_endpoints ? module.network.private_endpoint_subnet_id : null
  tags                       = local.tags
}

module "aks" {
  source                     = "./modules/aks"
  name                       = "aks-${local.name}"
  resource_group_name        = azurerm_resource_group.main.name
  location                   = var.location
  sku_tier                   = var.aks_sku_tier
  kubernetes_version         = var.kubernetes_version
  node_size                  = var.aks_node_size
  min_nodes                  = var.aks_min_nodes
  max_nodes                  = var.aks_max_nodes
  subnet_id                  = module.network.aks_subnet_id
  log_analytics_workspace_id = module.monitoring.workspace_id
  acr_id                     = module.acr.id
  tags                       = local.tags
}

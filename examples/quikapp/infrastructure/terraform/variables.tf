variable "environment" {
  description = "dev, qa, staging or prod."
  type        = string
}

variable "location" {
  description = "Azure region."
  type        = string
  default     = "eastus"
}

variable "aks_sku_tier" {
  description = "AKS control plane tier: Free or Standard."
  type        = string
}

variable "aks_min_nodes" {
  type = number
}

variable "aks_max_nodes" {
  type = number
}

variable "aks_node_size" {
  type    = string
  default = "Standard_D4s_v5"
}

variable "kubernetes_version" {
  type    = string
  default = "1.29"
}

variable "acr_sku" {
  description = "Basic, Standard or Premium."
  type        = string
}

variable "acr_georeplication_locations" {
  description = "Regions the registry is replicated to (Premium only)."
  type        = list(string)
  default     = []
}

variable "keyvault_sku" {
  description = "standard or premium."
  type        = string
}

variable "purge_protection" {
  type = bool
}

variable "private_endpoints" {
  type = bool
}

variable "log_retention_days" {
  type = number
}

variable "vnet_cidr" {
  type    = string
  default = "10.10.0.0/16"
}

variable "tags" {
  type    = map(string)
  default = {}
}

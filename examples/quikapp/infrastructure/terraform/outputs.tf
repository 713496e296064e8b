output "resource_group" {
  value = azurerm_resource_group.main.name
}

output "aks_cluster" {
  value = module.aks.name
}

output "acr_login_server" {
  value = module.acr.login_server
}

output "key_vault_uri" {
  value = module.keyvault.uri
}

output "log_analytics_workspace_id" {
  value = module.monitoring.workspace_id
}

output "kube_config" {
  value     = module.aks.kube_config
  sensitive = true
}

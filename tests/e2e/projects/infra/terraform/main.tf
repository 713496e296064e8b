terraform {
  required_version = ">= 1.5.7"
  backend "local" {}
}

variable "environment" {
  type = string
}

variable "node_count" {
  type    = number
  default = 1
}

variable "owner" {
  type = string
}

variable "dbPassword" {
  type      = string
  sensitive = true
}

variable "fail" {
  type    = bool
  default = false
}

resource "terraform_data" "cluster" {
  input = "aks-quikapp-${var.environment}"

  lifecycle {
    precondition {
      condition     = !var.fail
      error_message = "This environment is configured to fail its plan."
    }
  }
}

resource "terraform_data" "nodes" {
  input = var.node_count
}

resource "terraform_data" "database" {
  triggers_replace = [sha256(var.dbPassword)]
  input            = "db-${var.environment}-${var.owner}"
}

output "aks_cluster" {
  value = terraform_data.cluster.output
}

output "node_count" {
  value = terraform_data.nodes.output
}

output "db_password" {
  value     = var.dbPassword
  sensitive = true
}

environment = "prod"
node_count  = 3

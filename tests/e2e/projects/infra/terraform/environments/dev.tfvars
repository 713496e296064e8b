environment = "dev"
node_count  = 1

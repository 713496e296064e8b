environment = "qa"
node_count  = 2

"""The local target: services' replicas as processes on this machine, behind a gateway each."""

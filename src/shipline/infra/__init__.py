"""Infrastructure tools behind the `InfraTool` port: Terraform, and a fake for fast tests."""

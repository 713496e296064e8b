"""The `kubernetes` target: Kustomize overlays applied to a real API server (in progress)."""

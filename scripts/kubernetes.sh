# Sourced by scripts/test: a real Kubernetes control plane (1.20, built from Debian's source and
# cached) and the node agent, for the kubernetes target's tests. Exports
# SHIPLINE_TEST_KUBECONFIG; stopped on exit (with PostgreSQL, whose trap this extends).
k8s_run="${SHIPLINE_K8S_RUN:-/tmp/shipline-k8s}"
if bash scripts/k8s/control-plane.sh start; then
  export SHIPLINE_TEST_KUBECONFIG="$k8s_run/kubeconfig"
  python -m shipline.targets.kubernetes.nodeagent --kubeconfig "$SHIPLINE_TEST_KUBECONFIG" \
    --backoff 1 > "$k8s_run/logs/node-agent.log" 2>&1 &
  k8s_agent=$!
  stop_kubernetes() {
    kill "$k8s_agent" 2>/dev/null || true
    wait "$k8s_agent" 2>/dev/null || true
    bash scripts/k8s/control-plane.sh stop >/dev/null 2>&1 || true
  }
  trap 'stop_kubernetes; stop_postgres' EXIT
  for _ in $(seq 1 60); do
    kubectl --kubeconfig "$SHIPLINE_TEST_KUBECONFIG" get nodes 2>/dev/null | grep -q ' Ready' && break
    sleep 0.5
  done
else
  echo "warning: the Kubernetes control plane could not start; the kubernetes tests say so when skipped"
fi

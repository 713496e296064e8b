# Sourced by scripts/test: a real Kubernetes control plane (1.20, built from Debian's source and
# cached) and the node agent, for the kubernetes target's tests. Exports
# SHIPLINE_TEST_KUBECONFIG; stopped on exit (with PostgreSQL, whose trap this extends).
k8s_run="${SHIPLINE_K8S_RUN:-/tmp/shipline-k8s}"
k8s_script="$PWD/scripts/k8s/control-plane.sh"
if bash "$k8s_script" start; then
  export SHIPLINE_TEST_KUBECONFIG="$k8s_run/kubeconfig"
  python -m shipline.targets.kubernetes.nodeagent --kubeconfig "$SHIPLINE_TEST_KUBECONFIG" \
    --backoff 1 > "$k8s_run/logs/node-agent.log" 2>&1 &
  k8s_agent=$!
  stop_kubernetes() {
    kill "$k8s_agent" 2>/dev/null || true
    wait "$k8s_agent" 2>/dev/null || true
    bash "$k8s_script" stop >/dev/null 2>&1 || true
  }
  trap 'stop_kubernetes; stop_postgres' EXIT
  for _ in $(seq 1 60); do
    kubectl --kubeconfig "$SHIPLINE_TEST_KUBECONFIG" get nodes 2>/dev/null | grep -q ' Ready' && break
    sleep 0.5
  done
  if ! kill -0 "$k8s_agent" 2>/dev/null; then
    echo "error: the node agent did not start:" >&2
    cat "$k8s_run/logs/node-agent.log" >&2
    exit 1
  fi
  echo "== node agent (pid $k8s_agent) runs the pods"
else
  echo "warning: the Kubernetes control plane could not start; the kubernetes tests say so when skipped"
fi

#!/usr/bin/env bash
# A real Kubernetes control plane on loopback, for the kubernetes target's tests and the demo.
#
#   scripts/k8s/control-plane.sh build   # fetch Debian's kubernetes source, build the servers (cached)
#   scripts/k8s/control-plane.sh start   # etcd + kube-apiserver + controller-manager + scheduler
#   scripts/k8s/control-plane.sh stop
#   scripts/k8s/control-plane.sh env     # prints: export KUBECONFIG=...
#
# No Kubernetes server binary is on any package registry reached here, so the servers are built
# from Debian's `kubernetes` source package (1.20, vendored dependencies) with Debian's Go and
# GOPROXY=off. The source is fetched through a private apt configuration whose deb-src entries
# are derived from the machine's own Debian sources; the system's apt configuration is never
# edited. Binaries are cached in $SHIPLINE_K8S_CACHE (default ~/.cache/shipline/k8s).
set -euo pipefail
cache="${SHIPLINE_K8S_CACHE:-$HOME/.cache/shipline/k8s}"
run="${SHIPLINE_K8S_RUN:-/tmp/shipline-k8s}"
servers=(kube-apiserver kube-controller-manager kube-scheduler)

need_packages() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

private_apt() {
  # deb-src twins of the machine's Debian sources, in a folder of our own.
  local dir="$cache/apt"
  mkdir -p "$dir/parts" "$dir/lists/partial" "$dir/archives/partial"
  : > "$dir/parts/debian-src.sources"
  for file in /etc/apt/sources.list.d/*.sources; do
    [ -f "$file" ] || continue
    grep -q "debian" "$file" || continue
    sed 's/^Types: deb$/Types: deb-src/' "$file" >> "$dir/parts/debian-src.sources"
    echo >> "$dir/parts/debian-src.sources"
  done
  : > "$dir/sources.list"
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$file" ] || continue
    grep -E '^deb .*debian' "$file" | sed 's/^deb /deb-src /' >> "$dir/sources.list" || true
  done
  APT_OPTS=(-o "Dir::Etc::SourceList=$dir/sources.list" -o "Dir::Etc::SourceParts=$dir/parts" -o "APT::Sandbox::User=root"
            -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache::Archives=$dir/archives"
            -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache=")
}

# What the cached binaries were built with; a change of recipe rebuilds them.
RECIPE="kubernetes-1.20 + reflect2 from golang-github-modern-go-reflect2-dev"

build() {
  if [ -x "$cache/bin/kube-apiserver" ] && [ -x "$cache/bin/kube-controller-manager" ] \
     && [ -x "$cache/bin/kube-scheduler" ] \
     && [ "$(cat "$cache/bin/RECIPE" 2>/dev/null)" = "$RECIPE" ]; then
    echo "== control plane binaries cached in $cache/bin"
    return
  fi
  need_packages golang-go rsync dpkg-dev etcd-server openssl golang-github-modern-go-reflect2-dev
  private_apt
  mkdir -p "$cache/src"
  if ! ls -d "$cache"/src/kubernetes-*/ >/dev/null 2>&1; then
    echo "== fetching Debian's kubernetes source"
    apt-get "${APT_OPTS[@]}" update -qq
    (cd "$cache/src" && apt-get "${APT_OPTS[@]}" source -qq kubernetes >/dev/null)
  fi
  local tree
  tree="$(ls -d "$cache"/src/kubernetes-*/ | head -1)"
  # The vendored reflect2 1.0.1 iterates maps in a way Go 1.18+ faults on (the API server dies
  # encoding a custom resource's metadata); Debian's reflect2 1.0.2 is the fixed release.
  rsync -a --delete /usr/share/gocode/src/github.com/modern-go/reflect2/ \
    "$tree/vendor/github.com/modern-go/reflect2/" --exclude '*_test.go' --exclude '.git*'
  echo "== building ${servers[*]} (several minutes on 2 cores)"
  (cd "$tree" && GOPROXY=off GOFLAGS=-mod=vendor GO111MODULE=on \
     make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler" >/dev/null)
  mkdir -p "$cache/bin"
  for server in "${servers[@]}"; do
    cp "$tree/_output/local/bin/linux/$(dpkg --print-architecture)/$server" "$cache/bin/"
  done
  echo "$RECIPE" > "$cache/bin/RECIPE"
  rm -rf "$tree/_output"  # 1+ GB of build products; the binaries are kept
  echo "== built into $cache/bin"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

certificates() {
  # A CA, the API server's serving certificate (127.0.0.1 and the Service IP), an admin client
  # certificate (system:masters) and the service-account signing key. Private, in $run/pki.
  local pki="$run/pki"
  mkdir -p "$pki" && chmod 700 "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=shipline-test-ca" \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
    -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n' > "$pki/san.ext"
  openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 30 -extfile "$pki/san.ext" -out "$pki/apiserver.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=shipline-admin" \
    -keyout "$pki/admin.key" -out "$pki/admin.csr" 2>/dev/null
  openssl x509 -req -in "$pki/admin.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 30 -out "$pki/admin.crt" 2>/dev/null
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  chmod 600 "$pki"/*.key
}

kubeconfig() {
  local port="$1" pki="$run/pki"
  cat > "$run/kubeconfig" <<KUBE
apiVersion: v1
kind: Config
clusters:
- name: shipline-test
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority: $pki/ca.crt
users:
- name: shipline-admin
  user:
    client-certificate: $pki/admin.crt
    client-key: $pki/admin.key
contexts:
- name: shipline-test
  context: {cluster: shipline-test, user: shipline-admin}
current-context: shipline-test
KUBE
  chmod 600 "$run/kubeconfig"
}

start() {
  build
  if [ -f "$run/apiserver.pid" ] && kill -0 "$(cat "$run/apiserver.pid")" 2>/dev/null; then
    echo "== control plane already runs: export KUBECONFIG=$run/kubeconfig"
    return
  fi
  need_packages etcd-server openssl
  rm -rf "$run" && mkdir -p "$run/logs" && chmod 700 "$run"
  certificates
  local etcd_port peer_port api_port pki="$run/pki" bin="$cache/bin"
  etcd_port="$(free_port)"; peer_port="$(free_port)"; api_port="$(free_port)"
  etcd --name shipline --data-dir "$run/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "shipline=http://127.0.0.1:$peer_port" --unsafe-no-fsync \
    > "$run/logs/etcd.log" 2>&1 &
  echo $! > "$run/etcd.pid"
  "$bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" --insecure-port 0 \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" --authorization-mode Node,RBAC \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc --api-audiences https://kubernetes.default.svc \
    --service-cluster-ip-range 10.96.0.0/16 --allow-privileged=false \
    > "$run/logs/kube-apiserver.log" 2>&1 &
  echo $! > "$run/apiserver.pid"
  kubeconfig "$api_port"
  for _ in $(seq 1 120); do
    kubectl --kubeconfig "$run/kubeconfig" get --raw /readyz >/dev/null 2>&1 && break
    sleep 0.5
  done
  kubectl --kubeconfig "$run/kubeconfig" get --raw /readyz >/dev/null \
    || { tail -20 "$run/logs/kube-apiserver.log"; exit 1; }
  "$bin/kube-controller-manager" --kubeconfig "$run/kubeconfig" --leader-elect=false \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --port 0 --secure-port 0 --controllers '*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle' \
    --horizontal-pod-autoscaler-sync-period 5s \
    > "$run/logs/kube-controller-manager.log" 2>&1 &
  echo $! > "$run/controller-manager.pid"
  "$bin/kube-scheduler" --kubeconfig "$run/kubeconfig" --leader-elect=false \
    --port 0 --secure-port 0 > "$run/logs/kube-scheduler.log" 2>&1 &
  echo $! > "$run/scheduler.pid"
  echo "== control plane on https://127.0.0.1:$api_port: export KUBECONFIG=$run/kubeconfig"
}

stop() {
  for name in scheduler controller-manager apiserver etcd; do
    if [ -f "$run/$name.pid" ]; then
      kill "$(cat "$run/$name.pid")" 2>/dev/null || true
      rm -f "$run/$name.pid"
    fi
  done
  echo "== control plane stopped"
}

env() { echo "export KUBECONFIG=$run/kubeconfig"; }

case "${1:-}" in
  build|start|stop|env) "$1" ;;
  *) echo "usage: $0 build|start|stop|env" >&2; exit 2 ;;
esac

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

build() {
  if [ -x "$cache/bin/kube-apiserver" ] && [ -x "$cache/bin/kube-controller-manager" ] \
     && [ -x "$cache/bin/kube-scheduler" ]; then
    echo "== control plane binaries cached in $cache/bin"
    return
  fi
  need_packages golang-go rsync dpkg-dev etcd-server openssl
  private_apt
  mkdir -p "$cache/src"
  if ! ls -d "$cache"/src/kubernetes-*/ >/dev/null 2>&1; then
    echo "== fetching Debian's kubernetes source"
    apt-get "${APT_OPTS[@]}" update -qq
    (cd "$cache/src" && apt-get "${APT_OPTS[@]}" source -qq kubernetes >/dev/null)
  fi
  local tree
  tree="$(ls -d "$cache"/src/kubernetes-*/ | head -1)"
  echo "== building ${servers[*]} (several minutes on 2 cores)"
  (cd "$tree" && GOPROXY=off GOFLAGS=-mod=vendor GO111MODULE=on \
     make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler" >/dev/null)
  mkdir -p "$cache/bin"
  for server in "${servers[@]}"; do
    cp "$tree/_output/local/bin/linux/$(dpkg --print-architecture)/$server" "$cache/bin/"
  done
  rm -rf "$tree/_output"  # 1+ GB of build products; the binaries are kept
  echo "== built into $cache/bin"
}

"$@"

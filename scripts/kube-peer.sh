#!/usr/bin/env bash
# Builds the real Kubernetes peer the integration tests use: kube-apiserver
# from the k8s.io/kubernetes module (one release, every staging module at that
# release), in a throwaway tools module outside the work tree, cached by version.
# Installs Debian's etcd-server for its etcd. Idempotent; prints the binary path.
#
#   scripts/kube-peer.sh            # build if missing, print the path
#   KUBE_VERSION=1.34.4 scripts/kube-peer.sh
#
# The tests find the binary through $WARDEN_KUBE_APISERVER or the default
# cache path below (internal/kubetest).
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-1.34.4}
CACHE=${WARDEN_CI_CACHE:-/var/cache/warden-ci}
out="$CACHE/kube-apiserver-v$KUBE_VERSION/kube-apiserver"

if ! command -v etcd >/dev/null 2>&1; then
  echo "installing: etcd-server" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends etcd-server
  # Debian starts a system etcd on 2379; the tests start their own on free ports.
  systemctl disable --now etcd >/dev/null 2>&1 || true
fi

if [ -x "$out" ]; then
  echo "$out"
  exit 0
fi

work="$CACHE/build-kube-apiserver-v$KUBE_VERSION"
rm -rf "$work"
mkdir -p "$work" "$(dirname "$out")"
cd "$work"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
go mod init warden-kube-peer >/dev/null 2>&1
# The kubernetes module's go.mod replaces each staging module with a local
# path; a consumer must pin each one to the matching v0.N.M itself.
gomod=$(go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
staging=$(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod" | sort -u)
minor=0.${KUBE_VERSION#1.}
for m in $staging; do
  echo "replace $m => $m v$minor" >>go.mod
done
go get "k8s.io/kubernetes@v$KUBE_VERSION" >&2
go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${KUBE_VERSION#1.}" \
  -o "$out.tmp" k8s.io/kubernetes/cmd/kube-apiserver >&2
mv "$out.tmp" "$out"
cd / && rm -rf "$work"
echo "$out"

#!/usr/bin/env bash
# The unit tier as a normal user: `go test ./...` must pass without root
# (tests that need root, sshd, useradd, cgroups, Chromium, ssh-audit or
# asciinema carry the `integration` build tag; scripts/test.sh runs both
# tiers as root). Run as root, as CI does, it makes the user wardenunit
# and runs the unit tests as that user, on copies of the tree and of the
# module cache (root's may sit in a directory no one else can enter).
# Run as anyone else, it runs them as you.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  exec go test -count=1 ./...
fi
user=wardenunit
id "$user" >/dev/null 2>&1 || useradd -m -s /bin/sh "$user"
home=$(getent passwd "$user" | cut -d: -f6)
go mod download
install -d -o "$user" -g "$user" "$home/src" "$home/gomod" "$home/gomod/cache" "$home/gomod/cache/download"
rsync -a --delete --exclude .git --exclude node_modules ./ "$home/src/"
rsync -a "$(go env GOMODCACHE)/cache/download/" "$home/gomod/cache/download/"
chown -R "$user:" "$home/src" "$home/gomod"
echo "unit tests as $user (not root)"
runuser -u "$user" -- env -i HOME="$home" PATH="$(dirname "$(command -v go)"):/usr/sbin:/usr/bin:/bin" \
  GOMODCACHE="$home/gomod" GOPROXY=off GOTOOLCHAIN=local \
  bash -c 'cd "$HOME/src" && go test -count=1 ./...'

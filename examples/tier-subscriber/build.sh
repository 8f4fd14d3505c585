#!/usr/bin/env bash
# Builds the tier subscriber once per version of its sources and prints the binary's path.
# As deploy/local/infra.sh does for FerretDB: modules from the Go module proxy, module and
# build caches and the binary under ~/.cache/huitou (HUITOU_CACHE), nothing in the repo.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${HUITOU_CACHE:-$HOME/.cache/huitou}
version=$(cd "$here" && cat go.mod go.sum $(ls ./*.go | grep -v '_test\.go$') | sha256sum | cut -c1-12)
binary=$cache/bin/tier-subscriber-$version

if [[ ! -x $binary ]]; then
  command -v go >/dev/null || { echo "go not found: install Go 1.24 or newer" >&2; exit 1; }
  echo "building the tier subscriber into $binary" >&2
  mkdir -p "$cache/bin"
  (cd "$here" && GOTOOLCHAIN=local GOFLAGS=-mod=readonly GOMODCACHE="$cache/gomod" \
      GOCACHE="$cache/gocache" go build -o "$binary.tmp.$$" .)
  mv "$binary.tmp.$$" "$binary"
fi
echo "$binary"

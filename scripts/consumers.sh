#!/usr/bin/env bash
# Consumer checks: users pay only for what they import. Each check builds a
# scratch module outside the repository that imports some of our packages,
# with GOWORK=off and a replace line per module of this checkout (so the
# module graph is exactly what a user would get), and asserts that
# `go list -m all` holds no third-party module but the allowed trees. A
# module's tree is what `go list -m all` lists for a scratch module that
# imports the same packages of it directly (see tree).
#
#   scripts/consumers.sh            every check
#   scripts/consumers.sh -v         also print each scratch module's list
#   scripts/consumers.sh root redis only the named checks
#
# Modules come from the Go module proxy or the module cache (GOFLAGS
# -mod=mod, GOPROXY as the environment has it), as in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
GO=${GO:-go}
verbose=0
if [ "${1:-}" = -v ]; then verbose=1; shift; fi

# Always allowed: the root module's own requirements. gomemcache has no
# dependencies; testify's tree is there because the root module's tests
# use it (the one test-only exception, see ../shared/LAYOUT.md).
base="github.com/bradfitz/gomemcache github.com/stretchr/testify"

# name|packages (relative to the root module path)|allowed trees besides base
checks=(
  "root|provider store/memstore store/memcached store/tiered middleware|"
  "sqlstore|store/sqlstore|github.com/jackc/pgx/v5"
  "couchbase|store/couchbase|github.com/couchbase/gocb/v2"
  "redis|store/redis|github.com/redis/go-redis/v9"
  "prometheus|middleware/prometheus|github.com/prometheus/client_golang"
)

mod_path() { sed -n 's/^module[[:space:]]\{1,\}//p' "$1/go.mod" | head -1; }
self=$(mod_path .)

# replace lines for every module of the checkout but the tools module.
modules=$(./scripts/modules.sh)
replaces=""
for dir in $modules; do
  [ "$dir" = ./stress ] && continue
  replaces+="replace $(mod_path "$dir") => $root/${dir#./}"$'\n'
done

# tree MODULE VERSION PACKAGES...: the module's tree: what `go list -m
# all` lists for a scratch module that requires MODULE@VERSION and imports
# PACKAGES (of MODULE) directly: what a user of those packages pays,
# without us. Kept in $work/trees.
tree() {
  local m=$1 v=$2 d
  shift 2
  d=$work/trees/$(echo "$m@$v $*" | cksum | cut -d' ' -f1)
  if [ ! -f "$d/list" ]; then
    mkdir -p "$d"
    printf 'module example.com/tree\n\ngo 1.26.0\n\nrequire %s %s\n' "$m" "$v" >"$d/go.mod"
    { echo "package tree"; for p in "$@"; do echo "import _ \"$p\""; done; } >"$d/tree.go"
    (cd "$d" && GOWORK=off GOFLAGS=-mod=mod $GO mod tidy && GOWORK=off GOFLAGS=-mod=mod $GO list -m -f '{{.Path}}' all) >"$d/list"
  fi
  cat "$d/list"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
for c in "${checks[@]}"; do
  IFS='|' read -r name pkgs extra <<<"$c"
  if [ $# -gt 0 ] && ! printf '%s\n' "$@" | grep -qx "$name"; then continue; fi
  dir=$work/$name
  mkdir -p "$dir"
  {
    echo "// Package consumer imports what a user of the $name check imports."
    echo "package consumer"
    echo
    echo "import ("
    for p in $pkgs; do echo "	_ \"$self/$p\""; done
    echo ")"
  } >"$dir/consumer.go"
  printf 'module example.com/consumer/%s\n\ngo 1.26.0\n\n%s' "$name" "$replaces" >"$dir/go.mod"
  # v0.0.0 of every replaced module, then the rest from the proxy/cache.
  for p in $pkgs; do
    m=$self
    for dir2 in $modules; do
      mp=$(mod_path "$dir2")
      case "$self/$p/" in "$mp"/*) [ ${#mp} -gt ${#m} ] && m=$mp ;; esac
    done
    (cd "$dir" && GOWORK=off GOFLAGS=-mod=mod $GO mod edit -require="$m@v0.0.0")
  done
  if ! out=$(cd "$dir" && GOWORK=off GOFLAGS=-mod=mod $GO mod tidy 2>&1 && GOWORK=off GOFLAGS=-mod=mod $GO build . 2>&1); then
    echo "consumers: $name: the scratch module does not build:" >&2
    echo "$out" >&2
    failed+=("$name")
    continue
  fi
  all=$(cd "$dir" && GOWORK=off GOFLAGS=-mod=mod $GO list -m -f '{{if not .Main}}{{.Path}}{{end}}' all | grep -v "^$self\(/\|$\)" | sort -u || true)
  deps=$(cd "$dir" && GOWORK=off GOFLAGS=-mod=mod $GO list -deps -f '{{with .Module}}{{.Path}} {{end}}{{.ImportPath}}' .)
  allowed=$(for m in $base $extra; do
    v=$(cd "$dir" && GOWORK=off GOFLAGS=-mod=mod $GO list -m -f '{{.Version}}' "$m" 2>/dev/null) || continue
    pkgs_of=$(awk -v m="$m" '$1 == m { print $2 }' <<<"$deps")
    case $m in # test-only or unused here: the packages our tests use
    github.com/stretchr/testify) pkgs_of="$m/require $m/assert" ;;
    github.com/bradfitz/gomemcache) pkgs_of="$m/memcache" ;;
    esac
    tree "$m" "$v" ${pkgs_of:-$m}
  done | sort -u)
  extra_mods=$(comm -23 <(echo "$all") <(echo "$allowed") | grep . || true)
  built=$(cd "$dir" && GOWORK=off GOFLAGS=-mod=mod $GO list -deps -f '{{with .Module}}{{if not .Main}}{{.Path}}{{end}}{{end}}' . | grep -v "^$self\(/\|$\)" | sort -u | grep . || true)
  printf 'consumers: %-10s imports %s: go list -m all: %d third-party modules; compiled from: %s\n' \
    "$name" "$pkgs" "$(echo "$all" | grep -c . || true)" "$(echo ${built:-none})"
  if [ $verbose = 1 ]; then echo "$all" | sed 's/^/    /'; fi
  if [ -n "$extra_mods" ]; then
    echo "consumers: $name: modules outside the allowed trees ($base${extra:+ $extra}):" >&2
    echo "$extra_mods" | sed 's/^/    /' >&2
    failed+=("$name")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "consumers: FAILED: ${failed[*]}" >&2
  exit 1
fi

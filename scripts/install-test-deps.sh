#!/usr/bin/env bash
# Installs what the tests run against, from Debian's packages, when it is
# missing: memcached, PostgreSQL and redis-server (the tests start their own
# processes of them on free 127.0.0.1 ports and stop them afterwards) and Chromium (the
# example app's end-to-end test drives it headless).
set -euo pipefail

need=()
command -v memcached >/dev/null 2>&1 || need+=(memcached)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v pdftotext >/dev/null 2>&1 || need+=(poppler-utils) # the HTML reports' PDF test

command -v redis-server >/dev/null 2>&1 || need+=(redis-server)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-deps: missing ${need[*]}; run as root or install them: apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "install-test-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

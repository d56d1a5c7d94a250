#!/usr/bin/env bash
# Prints the directory of every module in go.work, one a line, relative to
# the repository root, and fails when a go.mod of the repository is not
# listed there (a module nobody vets or tests).
set -euo pipefail
cd "$(dirname "$0")/.."
listed=$(go list -m -f '{{.Dir}}' | sed "s|^$PWD|.|; s|^\./\?$|.|" | sort)
found=$(git ls-files --cached --others --exclude-standard 'go.mod' '*/go.mod' | xargs -n1 dirname | sed 's|^|./|; s|^\./\.$|.|' | sort -u)
missing=$(comm -13 <(echo "$listed") <(echo "$found"))
if [ -n "$missing" ]; then
  echo "modules.sh: these modules are not in go.work, so nothing would test them: $missing" >&2
  exit 1
fi
echo "$listed"

#!/usr/bin/env bash
# tools/promcheck (Prometheus's own rule and PromQL parsers), built from its Go module on
# first use and cached under .local/tools, like scripts/kustomize.sh: the alert rules and
# the dashboard's queries are checked offline, in `make test`.
# Usage: scripts/promcheck.sh rules FILE | scripts/promcheck.sh exprs < exprs.json
set -euo pipefail
LOG_TAG=promcheck
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SOURCE="$REPO_ROOT/tools/promcheck"
TOOLS="$REPO_ROOT/.local/tools"
BIN="$TOOLS/promcheck-$(cat "$SOURCE/go.mod" "$SOURCE/go.sum" "$SOURCE/main.go" | sha1sum | cut -c1-12)"

build_promcheck() {
  log "building tools/promcheck from the Go module proxy (once, ~1 min)"
  (cd "$SOURCE" && run_go build -o "$BIN.tmp" .) >&2
  mv "$BIN.tmp" "$BIN"
}

[[ -x "$BIN" ]] || build_promcheck
exec "$BIN" "$@"

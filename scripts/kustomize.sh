#!/usr/bin/env bash
# A pinned kustomize, built from its official Go module on first use and cached under
# .local/tools, so the manifest checks render the same way on every machine (no reliance
# on whichever kubectl happens to be installed). Usage: scripts/kustomize.sh build k8s/base
set -euo pipefail
LOG_TAG=kustomize
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

KUSTOMIZE_VERSION=v5.5.0
TOOLS="$REPO_ROOT/.local/tools"
BIN="$TOOLS/kustomize-$KUSTOMIZE_VERSION"

install_kustomize() {
  log "building kustomize $KUSTOMIZE_VERSION from the Go module proxy (once, ~30 s)"
  GOBIN="$TOOLS/bin" run_go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" >&2
  mv "$TOOLS/bin/kustomize" "$BIN"
}

[[ -x "$BIN" ]] || install_kustomize
exec "$BIN" "$@"

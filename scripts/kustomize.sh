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
  local go
  go="$(command -v go || echo /usr/local/go/bin/go)"
  [[ -x "$go" ]] || die "Go is needed once to build kustomize $KUSTOMIZE_VERSION (go not on PATH nor at /usr/local/go/bin/go)"
  log "building kustomize $KUSTOMIZE_VERSION from the Go module proxy (once, ~30 s)"
  mkdir -p "$TOOLS/go"
  # GOTOOLCHAIN=local: use the installed Go, never download another toolchain.
  GOPATH="$TOOLS/go" GOBIN="$TOOLS/bin" GOTOOLCHAIN=local GOFLAGS=-modcacherw \
    "$go" install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" >&2
  mv "$TOOLS/bin/kustomize" "$BIN"
}

[[ -x "$BIN" ]] || install_kustomize
exec "$BIN" "$@"

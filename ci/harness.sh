#!/usr/bin/env bash
# The Docker harness (cargo test -p harness) on a host with prerequisites
# installed. The workflow's harness job runs it after ci/vkms.sh with
# HARNESS_REQUIRE_DRM=1, so DRM tests fail instead of reporting "no DRM".
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/root.sh
ci/install-deps.sh
echo "== harness (HARNESS_REQUIRE_DRM=${HARNESS_REQUIRE_DRM:-0})"
exec cargo test -p harness "$@"

#!/usr/bin/env bash
# fmt, clippy -D warnings and every test except the Docker harness (which
# ci/harness.sh runs). Used by the workflow's "checks" job; .ci/run runs the
# same steps plus the harness. Installs the tools the tests run first
# (dbus-daemon, weston, wayland-info, curl…): a test that misses one fails.
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/root.sh
echo "== fmt"; cargo fmt --all -- --check
echo "== clippy"; cargo clippy --workspace --all-targets -- -D warnings
ci/install-deps.sh
echo "== unit and namespace tests"; cargo test --workspace --exclude harness "$@"

#!/usr/bin/env bash
# The project's test command: installs prerequisites, then runs every test
# of the workspace (daemon unit and namespace tests, examples, appengine-lite,
# and the Docker harness). Needs root (namespaces, mknod, Docker).
set -euo pipefail
cd "$(dirname "$0")/.."
ci/install-deps.sh
exec cargo test --workspace "$@"

#!/usr/bin/env bash
# The main job: installs prerequisites, builds everything, boots
# appengine-lite in Docker with all examples and prints the live mesh.
set -euo pipefail
cd "$(dirname "$0")/.."
ci/install-deps.sh
exec cargo run -p harness -- up "$@"

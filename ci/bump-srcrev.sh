#!/usr/bin/env bash
# Pins the layer's recipes to COMMIT (default: origin/main, else main):
# rewrites SRCREV in meta-layer/recipes-pv/pv-xconnect/pv-xconnect-rs.inc and
# regenerates pv-xconnect-crates.inc from that commit's Cargo.lock, so the
# two always describe the same tree. COMMIT must be pushed to the repository
# in the recipe's SRC_URI (bitbake fetches it from there). Commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."
ref=${1:-$(git rev-parse -q --verify origin/main >/dev/null && echo origin/main || echo main)}
rev=$(git rev-parse --verify "$ref^{commit}")
inc=meta-layer/recipes-pv/pv-xconnect/pv-xconnect-rs.inc
sed -i "s/^SRCREV = \".*\"$/SRCREV = \"$rev\"/" "$inc"
grep -q "^SRCREV = \"$rev\"$" "$inc" || { echo "bump-srcrev: SRCREV line not found in $inc" >&2; exit 1; }
python3 ci/gen-crates-inc.py --rev "$rev"
echo "SRCREV = $rev ($ref); review with: git diff -- meta-layer"

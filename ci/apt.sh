# Sourced by ci/ scripts: apt_install PKG... installs the Debian packages
# that are not installed yet (a second run only checks). Fails loudly.
apt_install() {
  local need=() p
  for p in "$@"; do
    [ -n "$p" ] || continue
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
  done
  [ ${#need[@]} -gt 0 ] || return 0
  echo "ci: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || { echo "ci: apt-get update failed" >&2; exit 1; }
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/tmp/ci-apt.log 2>&1 \
    || { tail -30 /tmp/ci-apt.log >&2; echo "ci: apt-get install failed" >&2; exit 1; }
}

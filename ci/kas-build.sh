#!/usr/bin/env bash
# Builds the layer with kas on top of meta-pantavisor's docker-x86_64
# scarthgap appengine configuration (meta-layer/kas/pv-xconnect-rs.yml).
# Hours and ~100 GB on a fresh machine: the workflow runs it only when the
# repository variable KAS_BUILD is set. Targets: $KAS_TARGETS, default the
# daemon and every example container (add pantavisor-appengine-distro for
# the full appengine image). Pvrexports land in
# build/tmp-scarthgap/deploy/images/docker-x86_64/<name>.pvrexport.tgz.
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/py-tools.sh

KAS_TARGETS=${KAS_TARGETS:-"pv-xconnect $(cd meta-layer/recipes-containers/pv-examples-rs && ls -- *.bb | sed 's/_.*//' | tr '\n' ' ')"}
KAS_CONFIG=${KAS_CONFIG:-meta-layer/kas/pv-xconnect-rs.yml}

# BitBake host tools (Yocto scarthgap "required packages", Debian/Ubuntu).
HOSTPKGS=(gawk wget git diffstat unzip texinfo gcc build-essential chrpath socat
          cpio python3 python3-pip python3-pexpect python3-venv xz-utils debianutils
          iputils-ping python3-git python3-jinja2 python3-subunit zstd liblz4-tool
          file locales libacl1 lz4)
missing=()
for p in "${HOSTPKGS[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
# Ubuntu >= 23.10 forbids unprivileged user namespaces, which bitbake uses.
if [ -e /proc/sys/kernel/apparmor_restrict_unprivileged_userns ]; then
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO sysctl -q kernel.apparmor_restrict_unprivileged_userns=0 || true
fi
locale -a 2>/dev/null | grep -qi 'en_US.utf8' || echo "ci: warning: en_US.UTF-8 locale missing (bitbake wants it)"

pytools_install "kas==$KAS_VERSION"
# bitbake refuses to run as root; CI machines that are root get a build user.
targets=()
for t in $KAS_TARGETS; do targets+=(--target "$t"); done
echo "== kas build $KAS_CONFIG ${targets[*]}"
if [ "$(id -u)" = 0 ]; then
  id -u kasbuild >/dev/null 2>&1 || useradd -m kasbuild
  chown -R kasbuild: . "$PYTOOLS_VENV"
  exec su kasbuild -c "cd '$PWD' && LANG=en_US.UTF-8 '$PYTOOLS_BIN/kas' build '$KAS_CONFIG' ${targets[*]}"
fi
LANG=en_US.UTF-8 exec "$PYTOOLS_BIN/kas" build "$KAS_CONFIG" "${targets[@]}"

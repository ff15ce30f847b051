#!/usr/bin/env bash
# Gives the host a real DRM device: loads VKMS (virtual KMS, one connected
# Virtual-1 connector, /dev/dri/card0, no render node). Needs the kernel's
# extra-modules package (Ubuntu: linux-modules-extra-$(uname -r)). Fails
# loudly if /dev/dri/card0 does not appear: the harness job must not pass
# without DRM (it runs with HARNESS_REQUIRE_DRM=1).
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/root.sh
if ! modprobe -n vkms 2>/dev/null; then
  pkg="linux-modules-extra-$(uname -r)"
  echo "ci: installing $pkg for vkms"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "$pkg" >/tmp/ci-vkms-apt.log 2>&1 \
    || { tail -20 /tmp/ci-vkms-apt.log >&2; echo "ci: cannot install $pkg (kernel $(uname -r))" >&2; exit 1; }
fi
modprobe vkms || { echo "ci: modprobe vkms failed" >&2; exit 1; }
for _ in $(seq 1 20); do [ -c /dev/dri/card0 ] && break; sleep 0.5; done
if [ ! -c /dev/dri/card0 ]; then
  echo "ci: /dev/dri/card0 missing after modprobe vkms" >&2; ls -la /dev/dri >&2 || true; exit 1
fi
ls -la /dev/dri
echo "ci: DRM ready: $(cat /sys/class/drm/card0/device/uevent 2>/dev/null | tr '\n' ' ')"
if command -v modetest >/dev/null; then modetest -M vkms -c 2>/dev/null | head -20 || true; fi

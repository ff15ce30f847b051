#!/usr/bin/env bash
# Installs and starts everything the tests need on a fresh Debian 12 machine
# (run as root). Idempotent: a second run only checks. Fails loudly.
set -euo pipefail

PKGS=(docker.io lxc squashfs-tools debootstrap socat curl dbus dbus-bin
      libglib2.0-bin busybox-static libdrm-tests netcat-openbsd weston
      wayland-utils iproute2 jq psmisc procps xdg-dbus-proxy python3-websockets
      systemd)

# Hosts with their own Docker engine (GitHub runners ship docker-ce, which
# conflicts with Debian's docker.io) keep it.
if docker info >/dev/null 2>&1; then
  PKGS=("${PKGS[@]/docker.io}")
fi

. "$(dirname "$0")/apt.sh"
apt_install "${PKGS[@]}"

# Docker: leave a running engine alone; otherwise start Debian's dockerd.
if ! docker info >/dev/null 2>&1; then
  echo "ci: starting dockerd"
  (dockerd --bridge=none --iptables=false >/tmp/dockerd.log 2>&1 &)
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { tail -30 /tmp/dockerd.log >&2; echo "ci: dockerd did not start" >&2; exit 1; }
fi
echo "ci: prerequisites ready (docker $(docker version --format '{{.Server.Version}}'))"

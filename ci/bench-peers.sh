#!/usr/bin/env bash
# Peer comparison anyone can reproduce (issue 16): runs the unix, REST and
# D-Bus benchmarks, which measure pv-xconnect, a direct connection and the
# peer a user would pick instead (socat, nginx, xdg-dbus-proxy) on the same
# provider with the same client in interleaved rounds, then prints their
# `peer-table:` and `idle-pss:` lines as one Markdown table. Installs the
# peers if missing (Debian packages). Run as root (namespaces); takes a few
# minutes per bench. Full outputs stay in $BENCH_OUT (default a temp dir).
#
# BENCH_CPUS=0 (a taskset CPU list) runs every bench, client, daemon and
# peers included, on those CPUs only. On a VM a wakeup that lands on a
# halted vCPU costs tens of microseconds (on one 2-vCPU firecracker guest a
# direct 1-byte round trip took 57 us across vCPUs and 2.7 us on one), and
# where each party runs decides the figure; on one CPU the ratios show
# what each relay costs in CPU instead, as on a busy device.
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/root.sh

. ci/apt.sh
apt_install socat nginx-light xdg-dbus-proxy

out=${BENCH_OUT:-$(mktemp -d /tmp/bench-peers.XXXXXX)}
mkdir -p "$out"
pin=()
where="$(nproc) cores"
if [ -n "${BENCH_CPUS:-}" ]; then
  pin=(taskset -c "$BENCH_CPUS")
  where="$(nproc) cores, everything pinned to CPU(s) $BENCH_CPUS"
fi
run() { # name, cargo args...
  local name=$1; shift
  echo "== $name (output: $out/$name.txt)"
  # Built unpinned first: only the bench itself runs on $BENCH_CPUS.
  { cargo bench "$@" --no-run && "${pin[@]}" cargo bench "$@"; } 2>"$out/$name.err" | tee "$out/$name.txt" \
    || { tail -30 "$out/$name.err" >&2; echo "bench-peers: $name failed" >&2; exit 1; }
}
run unix_relay -p pv-xconnect --bench unix_relay
run rest_relay -p pv-xconnect --bench rest_relay
run dbus -p pv-e2e --bench dbus

cat "$out"/{unix_relay,rest_relay,dbus}.txt >"$out/all.txt"
echo
echo "pv-xconnect against its peers, $(date -u +%Y-%m-%d), $where," \
  "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)" \
  "(medians of interleaved rounds; ratios of the same run)"
echo
echo "| figure | peer/direct | ours/direct | ours/peer |"
echo "|---|---|---|---|"
sed -n 's/^peer-table: \(.*\)$/| \1 |/p' "$out/all.txt"
# Idle PSS: each peer next to the daemon's (with one unix link).
awk '
  /^idle-pss: pv-xconnect .*1 unix link/ { ours = $3 }
  /^idle-pss: (socat|nginx|xdg-dbus-proxy) / { n++; name[n] = $2; pss[n] = $3 }
  END {
    for (i = 1; i <= n; i++) {
      peers = peers (i > 1 ? ", " : "") name[i] " " pss[i]
      if (ours != "" && pss[i] > 0) ratio = ratio (i > 1 ? ", " : "") sprintf("%.2fx %s", ours / pss[i], name[i])
    }
    printf "| idle PSS, MiB | %s | %s (daemon, 1 link) | %s |\n", (n ? peers : "no peer measured"), (ours != "" ? ours : "?"), ratio
  }' "$out/all.txt"
missing=$(grep -h 'not on PATH\|not installed\|did not start' "$out/all.txt" || true)
if [ -n "$missing" ]; then
  echo
  echo "missing peers:"
  echo "$missing"
fi

#!/usr/bin/env bash
# Build every fuzz target (libFuzzer + AddressSanitizer, as cargo-fuzz
# builds them) and run each for FUZZ_SECONDS (default 5) on its committed
# corpus. Any crash fails the run; libFuzzer leaves the input as
# fuzz/artifacts/<target>/crash-*.
#
#   ci/fuzz.sh                     every target, 5 s each
#   FUZZ_SECONDS=600 ci/fuzz.sh dbus_policy
#   FUZZ_RUNS=10000000 ci/fuzz.sh graph   (a number of executions instead)
#   FUZZ_SANITIZER=none ci/fuzz.sh        (no AddressSanitizer: about twice
#                                          the executions; every fuzzed
#                                          function is safe Rust)
#
# The stable toolchain is used with RUSTC_BOOTSTRAP=1 (sanitizers and
# coverage passes are unstable flags); no nightly is needed. With
# cargo-fuzz installed, `cargo fuzz run <target>` in fuzz/ works too.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

# libfuzzer-sys compiles libFuzzer (C++): a fresh Debian has gcc for
# linking Rust but not always g++.
if ! command -v c++ >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ci/fuzz.sh: installing g++ (libFuzzer is C++)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++ >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++ >/dev/null; }
  else
    echo "ci/fuzz.sh: no C++ compiler (c++): install g++ (libFuzzer is C++)" >&2
    exit 1
  fi
fi

TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
export RUSTC_BOOTSTRAP=1
SANITIZER=${FUZZ_SANITIZER:-address}
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
if [ "$SANITIZER" != none ]; then
  RUSTFLAGS="$RUSTFLAGS -Zsanitizer=$SANITIZER"
fi
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-target/$SANITIZER}
# --target keeps build scripts and proc macros uninstrumented.
cargo build --locked --release --target "$TRIPLE" --bins
bin="$CARGO_TARGET_DIR/$TRIPLE/release"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^pv-xconnect-fuzz$')
fi
limit=(-max_total_time="${FUZZ_SECONDS:-5}")
[ -n "${FUZZ_RUNS:-}" ] && limit=(-runs="$FUZZ_RUNS")
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  # New inputs go to a scratch directory, so the committed corpus stays
  # the hand-picked seeds and regression cases.
  scratch=$(mktemp -d)
  echo "== fuzz $t"
  log="$scratch.log"
  set +e
  # Inputs bigger than a few KiB only slow the search down (a D-Bus
  # session of tens of messages, a request head, a graph of links).
  "$bin/$t" "${limit[@]}" -max_len=8192 -artifact_prefix="artifacts/$t/" -print_final_stats=1 \
    "$scratch" "corpus/$t" >"$log" 2>&1
  status=$?
  set -e
  grep -E '^(#[0-9]+ +(INITED|DONE)|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==ERROR|SUMMARY|Test unit written|panicked)' "$log" || true
  [ -z "${FUZZ_LOG_DIR:-}" ] || cp "$log" "$FUZZ_LOG_DIR/$t.log"
  [ "$status" -eq 0 ] || tail -40 "$log" >&2
  rm -f "$log"
  rm -rf "$scratch"
  if [ "$status" -ne 0 ]; then
    echo "fuzz target $t failed (exit $status): see fuzz/artifacts/$t/" >&2
    exit "$status"
  fi
done

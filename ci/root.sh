# Sourced by ci/ scripts that need root (namespaces, mknod, modprobe,
# Docker). Our machines run as root already; on a GitHub runner this re-runs
# the calling script under sudo, keeping the Rust toolchain and the
# variables the tests read.
if [ "$(id -u)" != 0 ]; then
  exec sudo env PATH="$PATH" HOME="$HOME" \
    CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" \
    CI="${CI:-}" HARNESS_REQUIRE_DRM="${HARNESS_REQUIRE_DRM:-}" \
    CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-}" "$0" "$@"
fi

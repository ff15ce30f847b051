SUMMARY = "Pantavisor service-mesh daemon (pv-xconnect), Rust implementation"
DESCRIPTION = "Drop-in replacement for Pantavisor's C pv-xconnect: reads the \
xconnect graph from pv-ctrl and injects mediated unix, rest, dbus, drm and \
wayland endpoints into consumer containers."
SECTION = "base"

require pv-xconnect-rs.inc
require ${BPN}-crates.inc

inherit cargo cargo-update-recipe-crates

# Only the daemon out of the workspace (examples: pv-examples_git.bb).
CARGO_BUILD_FLAGS:append = " -p pv-xconnect --bin pv-xconnect"

# Installs /usr/bin/pv-xconnect, the path Pantavisor spawns; the pantavisor
# bbappend of this layer removes the C binary from the pantavisor package.

SUMMARY = "pv-xconnect-rs example provider and consumer programs"
DESCRIPTION = "The binaries the pv-example-* containers run: one package \
pv-examples-<name> per example, installing /usr/bin/pv-example-<name>."
SECTION = "examples"

require pv-xconnect-rs.inc
# Same pruned workspace, same Cargo.lock (pv-xconnect-rs.inc): the daemon's
# generated crate list applies.
require pv-xconnect-crates.inc

inherit cargo

CARGO_BUILD_FLAGS:append = " -p pv-examples --bins"

PV_EXAMPLES = "unix-server unix-client rest-server rest-client \
               dbus-server dbus-client dbus-client-nobody dbus-attacker \
               dbus-host-server dbus-host-client \
               drm-provider drm-master drm-render \
               wayland-server wayland-client \
               input-provider input-consumer"

PACKAGES =+ "${@' '.join('pv-examples-' + e for e in d.getVar('PV_EXAMPLES').split())}"

python __anonymous() {
    for ex in d.getVar('PV_EXAMPLES').split():
        d.setVar('FILES:pv-examples-' + ex, '${bindir}/pv-example-' + ex)
}

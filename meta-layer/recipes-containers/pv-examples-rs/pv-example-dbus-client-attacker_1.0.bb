SUMMARY = "pv-xconnect-rs example container pv-example-dbus-client-attacker"
DESCRIPTION = "Consumer of system-bus with role nobody that tries what the policy forbids and reports each refusal."
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

inherit pv_example_container

# Like upstream: in the app group, so its restart policy and the
# start/stop API apply.
PVR_APP_ADD_GROUP = "app"

# Upstream ships only the manifest (pv-example-dbus-client-attacker.args.json,
# no recipe): proves the D-Bus mediation refuses what role "nobody" must not
# do (own the name, call other destinations, fake uid 0). The program is
# pv-example-dbus-attacker (harness.json "binary").

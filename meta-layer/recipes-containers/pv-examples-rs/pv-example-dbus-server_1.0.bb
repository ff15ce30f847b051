SUMMARY = "pv-xconnect-rs example container pv-example-dbus-server"
DESCRIPTION = "Provider of system-bus (dbus, /run/dbus/system_bus_socket): a system dbus-daemon with service org.pantavisor.Example."
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

inherit pv_example_container

# Like upstream: in the app group, so its restart policy and the
# start/stop API apply.
PVR_APP_ADD_GROUP = "app"

# The server runs dbus-daemon (/usr/bin/dbus-daemon) itself, with
# rootfs/etc/pv-example-dbus/bus.conf; rootfs/etc/passwd and group (root,
# operator 1001, nobody) replace the image's, as in the harness.
IMAGE_INSTALL += "dbus"

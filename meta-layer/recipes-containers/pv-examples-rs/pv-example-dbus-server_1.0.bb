SUMMARY = "pv-xconnect-rs example container pv-example-dbus-server"
DESCRIPTION = "Provider of system-bus (dbus, /run/dbus/system_bus_socket): a system dbus-daemon with service org.pantavisor.Example."
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

inherit pv_example_container

# Like upstream: in the app group, so its restart policy and the
# start/stop API apply.
PVR_APP_ADD_GROUP = "app"

# The server runs the system dbus-daemon itself; uid 1001 "operator" is a
# role its policy names (nobody and root come with base-passwd).
IMAGE_INSTALL += "dbus"

inherit extrausers
EXTRA_USERS_PARAMS = "useradd -r -u 1001 -M -d /nonexistent -s /bin/false operator;"

SUMMARY = "pv-xconnect-rs example container pv-example-dbus-host-client"
DESCRIPTION = "Consumer of the hosted system-bus (role operator): calls org.pantavisor.Example, prints the uid the bus sees."
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

inherit pv_example_container

# Like upstream: in the app group, so its restart policy and the
# start/stop API apply.
PVR_APP_ADD_GROUP = "app"

# Needs Pantavisor built with the hosted D-Bus system bus.

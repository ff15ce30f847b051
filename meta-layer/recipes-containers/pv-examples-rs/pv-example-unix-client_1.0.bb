SUMMARY = "pv-xconnect-rs example container pv-example-unix-client"
DESCRIPTION = "Consumer of raw-unix at /run/pv/services/raw-unix.sock: checks the echo and the passed fd every 5 s."
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

inherit pv_example_container

# Like upstream: in the app group, so its restart policy and the
# start/stop API apply.
PVR_APP_ADD_GROUP = "app"

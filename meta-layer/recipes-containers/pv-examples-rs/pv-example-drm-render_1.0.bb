SUMMARY = "pv-xconnect-rs example container pv-example-drm-render"
DESCRIPTION = "Consumer of drm-render at /dev/dri/renderD128: prints the driver version."
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

inherit pv_example_container

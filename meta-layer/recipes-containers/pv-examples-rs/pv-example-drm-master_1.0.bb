SUMMARY = "pv-xconnect-rs example container pv-example-drm-master"
DESCRIPTION = "Consumer of drm-master at /dev/dri/card0: prints the driver and KMS resources, sets a mode where a connector is connected."
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

inherit pv_example_container

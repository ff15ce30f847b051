SUMMARY = "pv-xconnect-rs example container pv-example-input-consumer"
DESCRIPTION = "Consumer of input-keyboard at /dev/input/event0: prints the device numbers and the key events it reads."
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

inherit pv_example_container

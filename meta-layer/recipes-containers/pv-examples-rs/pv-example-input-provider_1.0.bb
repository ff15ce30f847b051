SUMMARY = "pv-xconnect-rs example container pv-example-input-provider"
DESCRIPTION = "Provider of input-keyboard (input, /dev/input/pv-example-keyboard): a uinput virtual keyboard typing KEY_A."
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

inherit pv_example_container

# Binds the host's /dev/uinput (optional) through PV_LXC_EXTRA_CONF in
# args.json; see the example's README.md.

SUMMARY = "pv-xconnect-rs example container pv-example-drm-provider"
DESCRIPTION = "Provider of drm-master (/dev/dri/card0) and drm-render (/dev/dri/renderD128): only exports the device nodes."
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

inherit pv_example_container

# Exports /dev/dri/card0 (drm-master) and /dev/dri/renderD128 (drm-render).
# Pantavisor gives a container no host device nodes: args.json binds the
# host's /dev/dri through PV_LXC_EXTRA_CONF (see the example's README.md).

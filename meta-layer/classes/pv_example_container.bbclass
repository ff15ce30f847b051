# Builds one pv-xconnect-rs example as a Pantavisor container (pvrexport),
# the way meta-pantavisor builds its pv-example-* containers:
#
# - rootfs: busybox + the example's package pv-examples-<name> from
#   pv-examples_git.bb (binary /usr/bin/${PN}, the container's entrypoint);
# - manifests: args.json and/or services.json from
#   ${PV_XCONNECT_RS_TOPDIR}/examples-containers/${PN}/ — whichever exist —
#   handed to container-pvrexport (args.json to `pvr app add --arg-json`,
#   services.json copied next to run.json);
# - output: ${DEPLOY_DIR_IMAGE}/${PN}.pvrexport.tgz.

inherit core-image container-pvrexport

IMAGE_BASENAME = "${PN}"
PVRIMAGE_AUTO_MDEV ?= "0"

PV_EXAMPLE_MANIFEST_DIR = "${PV_XCONNECT_RS_TOPDIR}/examples-containers/${PN}"
FILESEXTRAPATHS:prepend := "${PV_XCONNECT_RS_TOPDIR}/examples-containers/${PN}:"

def pv_example_manifests(d):
    import os
    mdir = d.getVar('PV_EXAMPLE_MANIFEST_DIR')
    found = [f for f in ('args.json', 'services.json') if os.path.isfile(os.path.join(mdir, f))]
    return ' '.join('file://' + f for f in found)

SRC_URI += "${@pv_example_manifests(d)}"

do_fetch[noexec] = "0"
do_unpack[noexec] = "0"

PV_EXAMPLE_PACKAGE = "${@d.getVar('PN').replace('pv-example-', 'pv-examples-', 1)}"
IMAGE_INSTALL += "busybox ${PV_EXAMPLE_PACKAGE}"

PVR_APP_ADD_EXTRA_ARGS += "--config=Entrypoint=/usr/bin/${PN}"

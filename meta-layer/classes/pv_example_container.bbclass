# Builds one pv-xconnect-rs example as a Pantavisor container (pvrexport),
# the way meta-pantavisor builds its pv-example-* containers, from the same
# files the Docker harness reads in examples-containers/${PN}/:
#
# - args.json, services.json (whichever exist): handed to
#   container-pvrexport (args.json to `pvr app add --arg-json`,
#   services.json copied next to run.json);
# - rootfs/: every file, installed at the same path in the image
#   (ci/check-layer.sh and ci/bitbake-parse.sh check that none is missed);
# - harness.json "binary": the program to run when it is not named like
#   the container (default ${PN}); it comes from package
#   pv-examples-<binary without pv-example-> of pv-examples_git.bb and is
#   the entrypoint /usr/bin/<binary>. Busybox completes the rootfs.
#
# Output: ${DEPLOY_DIR_IMAGE}/${PN}.pvrexport.tgz.

inherit core-image container-pvrexport

IMAGE_BASENAME = "${PN}"
PVRIMAGE_AUTO_MDEV ?= "0"

PV_EXAMPLE_DIR = "${PV_XCONNECT_RS_TOPDIR}/examples-containers/${PN}"
FILESEXTRAPATHS:prepend := "${PV_XCONNECT_RS_TOPDIR}/examples-containers/${PN}:"

def pv_example_manifests(d):
    import os
    mdir = d.getVar('PV_EXAMPLE_DIR')
    # Reparse when a manifest appears or goes (the folder's mtime changes).
    bb.parse.mark_dependency(d, mdir)
    found = [f for f in ('args.json', 'services.json') if os.path.isfile(os.path.join(mdir, f))]
    return ' '.join('file://' + f for f in found)

def pv_example_rootfs_files(d):
    import os
    top = os.path.join(d.getVar('PV_EXAMPLE_DIR'), 'rootfs')
    files = []
    for root, dirs, names in os.walk(top):
        bb.parse.mark_dependency(d, root)
        dirs.sort()
        files += [os.path.relpath(os.path.join(root, n), top) for n in sorted(names)]
    return ' '.join(files)

def pv_example_binary(d):
    import json, os
    path = os.path.join(d.getVar('PV_EXAMPLE_DIR'), 'harness.json')
    if not os.path.isfile(path):
        return d.getVar('PN')
    bb.parse.mark_dependency(d, path)
    with open(path) as f:
        return json.load(f).get('binary') or d.getVar('PN')

# Relative to rootfs/; the parse depends on the folder's listing.
PV_EXAMPLE_ROOTFS_FILES = "${@pv_example_rootfs_files(d)}"
PV_EXAMPLE_BINARY = "${@pv_example_binary(d)}"

SRC_URI += "${@pv_example_manifests(d)} \
            ${@' '.join('file://rootfs/%s;subdir=pv-example' % f for f in d.getVar('PV_EXAMPLE_ROOTFS_FILES').split())}"

do_fetch[noexec] = "0"
do_unpack[noexec] = "0"

PV_EXAMPLE_PACKAGE = "${@d.getVar('PV_EXAMPLE_BINARY').replace('pv-example-', 'pv-examples-', 1)}"
IMAGE_INSTALL += "busybox ${PV_EXAMPLE_PACKAGE}"

# After package installation and user creation: rootfs/ files win, as in
# the harness (e.g. the dbus server's /etc/passwd with its operator user).
pv_example_install_rootfs() {
	if [ -n "${PV_EXAMPLE_ROOTFS_FILES}" ]; then
		cp -R --no-preserve=ownership ${WORKDIR}/pv-example/rootfs/. ${IMAGE_ROOTFS}/
	fi
}
ROOTFS_POSTPROCESS_COMMAND += "pv_example_install_rootfs;"

PVR_APP_ADD_EXTRA_ARGS += "--config=Entrypoint=/usr/bin/${PV_EXAMPLE_BINARY}"

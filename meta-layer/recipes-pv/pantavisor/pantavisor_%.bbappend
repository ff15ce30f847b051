# Use the Rust pv-xconnect (recipe pv-xconnect) instead of the C one.
#
# Pantavisor keeps spawning /usr/bin/pv-xconnect (daemons.c, built with
# PANTAVISOR_XCONNECT=ON when "xconnect" is in PANTAVISOR_FEATURES), so the
# feature stays on; the C binary that cmake installs there is removed from
# this package and the pv-xconnect package, which installs the Rust daemon at
# the same path, is pulled in instead.
#
# Set PV_XCONNECT_RS = "0" (local.conf) to keep the C daemon.

# nooelint: oelint.vars.noncoreoverride - this bbappend exists to change pantavisor (switch: PV_XCONNECT_RS)
PV_XCONNECT_RS ??= "1"

# nooelint: oelint.vars.noncoreoverride - this bbappend exists to change pantavisor (switch: PV_XCONNECT_RS)
PV_XCONNECT_RS_ACTIVE = "${@'1' if d.getVar('PV_XCONNECT_RS') == '1' and bb.utils.contains('PANTAVISOR_FEATURES', 'xconnect', True, False, d) else '0'}"

# nooelint: oelint.vars.noncoreoverride - this bbappend exists to change pantavisor (switch: PV_XCONNECT_RS)
do_install:append() {
	if [ "${PV_XCONNECT_RS_ACTIVE}" = "1" ]; then
		rm -f ${D}${bindir}/pv-xconnect
	fi
}

# nooelint: oelint.vars.noncoreoverride - this bbappend exists to change pantavisor (switch: PV_XCONNECT_RS)
RDEPENDS:${PN}:append = " ${@'pv-xconnect' if d.getVar('PV_XCONNECT_RS_ACTIVE') == '1' else ''}"

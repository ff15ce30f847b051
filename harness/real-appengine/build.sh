#!/usr/bin/env bash
# Builds a Docker image of the REAL Pantavisor appengine from upstream source, for
# checking the harness and appengine-lite against the real thing. Scratch use only:
# nothing it makes belongs in the project repository.
#
#   build.sh MIRRORS [TAG]
#
# MIRRORS holds one git directory (bare clone, mirror or checkout) per upstream repo,
# named owner+repo; fetch-sources.sh MIRRORS makes them (an owner+repo/repo layout
# works as well):
#   pantavisor+pantavisor pantavisor+meta-pantavisor pantavisor+libthttp
#   libevent+libevent h2o+picohttpparser lxc+lxc
# TAG defaults to pantavisor-appengine:real-src. Work happens in $WORKDIR
# (default /tmp/real-appengine), never in the repository. About 10 minutes on 2 cores.
set -euo pipefail
M=$(cd "${1:?usage: build.sh MIRRORS [TAG]}" && pwd)
TAG=${2:-pantavisor-appengine:real-src}
W=${WORKDIR:-/tmp/real-appengine}
HERE=$(cd "$(dirname "$0")" && pwd)
S=$W/src SR=$W/sysroot R=$W/rootfs
mkdir -p "$S" "$SR"

# versions: what meta-pantavisor's docker-x86_64 appengine build uses where it can be
# had here (the Pantacor LXC fork cannot: upstream LXC + lxc-standin.patch stands in)
PV_REV=${PV_REV:-303584a7}          # pantavisor master
LIBEVENT_REV=${LIBEVENT_REV:-release-2.2.1-alpha}
LXC_REV=${LXC_REV:-v6.0.5}

step() { echo "== $*"; }
done_() { [ -e "$W/.done-$1" ]; }      # steps already built are skipped on a rerun
mark() { touch "$W/.done-$1"; }
unpack() {  # unpack REPO REV DEST
  rm -rf "$3" && mkdir -p "$3"
  local g="$M/$1"
  [ -d "$g/repo" ] && g="$g/repo"        # fetch lays a mirror out as owner+repo/repo
  [ -d "$g/.git" ] && g="$g/.git"
  git --git-dir="$g" archive "$2" | tar -x -C "$3"
}

step "build dependencies (Debian)"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends cmake meson ninja-build gcc g++ make pkg-config \
  libmbedtls-dev libcap-dev zlib1g-dev autoconf automake libtool debootstrap docker.io >/dev/null

if ! done_ deps; then
step "sources"
unpack pantavisor+pantavisor "$PV_REV" "$S/pantavisor"
unpack pantavisor+meta-pantavisor HEAD "$S/meta-pantavisor"
unpack libevent+libevent "$LIBEVENT_REV" "$S/libevent"
unpack pantavisor+libthttp HEAD "$S/libthttp"
unpack h2o+picohttpparser HEAD "$S/picohttpparser"
unpack lxc+lxc "$LXC_REV" "$S/lxc"
for p in "$S"/meta-pantavisor/recipes-pv/libevent/files/*.patch; do
  patch -d "$S/libevent" -p1 -s < "$p"
done
patch -d "$S/lxc" -p1 -s < "$HERE/lxc-standin.patch"

step "libevent (mbedtls), libthttp, picohttpparser"
( cd "$S/libevent" && mkdir -p b && cd b &&
  cmake .. -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_INSTALL_LIBDIR=lib -DCMAKE_BUILD_TYPE=Release \
    -DEVENT__DISABLE_OPENSSL=ON -DEVENT__DISABLE_MBEDTLS=OFF -DEVENT__DISABLE_TESTS=ON \
    -DEVENT__DISABLE_SAMPLES=ON -DEVENT__DISABLE_BENCHMARK=ON -DEVENT__LIBRARY_TYPE=SHARED \
    -DEVENT__DISABLE_DEBUG_MODE=OFF -DEVENT__DISABLE_REGRESS=ON >/dev/null &&
  make -j2 >/dev/null && make install DESTDIR="$SR" >/dev/null )
( cd "$S/libthttp" && mkdir -p b && cd b && cmake .. -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_INSTALL_LIBDIR=lib >/dev/null &&
  make -j2 >/dev/null && make install DESTDIR="$SR" >/dev/null )
( cd "$S/picohttpparser" &&
  gcc -O2 -fPIC -shared -o libpicohttpparser.so picohttpparser.c -Wl,-soname,libpicohttpparser.so &&
  install -D -m755 libpicohttpparser.so "$SR/usr/lib/libpicohttpparser.so" &&
  install -D -m644 picohttpparser.h "$SR/usr/include/picohttpparser.h" )

step "LXC (upstream + stand-in for the Pantacor fork's API)"
( cd "$S/lxc" && meson setup b --prefix=/usr --libdir=lib --localstatedir=/usr/var --sysconfdir=/etc \
    -Dapparmor=false -Dselinux=false -Dseccomp=false -Dcapabilities=true -Dexamples=false \
    -Dman=false -Dtests=false -Dtools=true -Dcommands=true -Dinstall-init-files=false \
    -Dinstall-state-dirs=false -Dio-uring-event-loop=false -Ddbus=false -Dpam-cgroup=false \
    -Dopenssl=false -Dthread-safety=true -Dmemfd-rexec=true >/dev/null &&
  ninja -C b -j2 >/dev/null && DESTDIR="$SR" ninja -C b install >/dev/null &&
  install -m644 src/lxc/pv_export.h "$SR/usr/include/lxc/pv_export.h" )
mark deps
fi

step "pantavisor (appengine, xconnect, pvtx, pvcontrol)"
[ -d "$S/pantavisor" ] || unpack pantavisor+pantavisor "$PV_REV" "$S/pantavisor"
( cd "$S/pantavisor" && mkdir -p b && cd b &&
  cmake .. -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_INSTALL_LIBDIR=lib -DCMAKE_INSTALL_LOCALSTATEDIR=/var \
    -DCMAKE_INSTALL_SYSCONFDIR=/etc -DCMAKE_PREFIX_PATH="$SR/usr" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_FLAGS="-I$SR/usr/include -Wno-unused-result -Wno-error=implicit-function-declaration -Wno-error -Wno-deprecated-declarations -Wno-error=deprecated-declarations" \
    -DCMAKE_EXE_LINKER_FLAGS="-L$SR/usr/lib -ldl" -DCMAKE_SHARED_LINKER_FLAGS="-L$SR/usr/lib" \
    -DCMAKE_MODULE_LINKER_FLAGS="-L$SR/usr/lib" \
    -DPANTAVISOR_APPENGINE=ON -DPANTAVISOR_XCONNECT=ON -DPANTAVISOR_DEBUG=ON -DPANTAVISOR_PVTX=ON \
    -DPANTAVISOR_RUNTIME=ON -DPANTAVISOR_PVCONTROL=ON -DPANTAVISOR_E2FSGROW_ENABLE=OFF \
    -DPANTAVISOR_RUNC_ENABLE=OFF -DPANTAVISOR_PVTEST=ON -DPANTAVISOR_PVTX_STATIC=OFF >/dev/null &&
  make -j2 >/dev/null && rm -rf "$W/pvinstall" && make install DESTDIR="$W/pvinstall" >/dev/null )

step "rootfs (Debian 12 minbase + what the Yocto image carries)"
if [ ! -x "$R/bin/busybox" ]; then
  mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
  rm -rf "$R"
  debootstrap --variant=minbase --include=busybox,dbus,dbus-daemon,dbus-bin,bash,netcat-openbsd,libmbedtls14,libcap2,zlib1g,util-linux,squashfs-tools,e2fsprogs \
    bookworm "$R" "$mirror" >/dev/null
fi
I=$W/img
rm -rf "$I" && cp -a "$R" "$I"
cp -a "$SR"/usr/lib/*.so* "$I/usr/lib/"
[ -d "$SR/usr/lib/lxc" ] && cp -a "$SR/usr/lib/lxc" "$I/usr/lib/"
[ -d "$SR/usr/libexec" ] && cp -a "$SR/usr/libexec/." "$I/usr/libexec/"
[ -d "$SR/usr/share/lxc" ] && cp -a "$SR/usr/share/lxc" "$I/usr/share/"
[ -d "$SR/etc/lxc" ] && mkdir -p "$I/etc/lxc" && cp -a "$SR/etc/lxc/." "$I/etc/lxc/"
mkdir -p "$I/usr/var/lib/lxc"
for t in lxc-console lxc-info lxc-ls lxc-top; do cp -a "$SR/usr/bin/$t" "$I/usr/bin/"; done
cp -a "$W/pvinstall/." "$I/"
[ -e "$I/bin/ps" ] || [ -e "$I/usr/bin/ps" ] || ln -s /bin/busybox "$I/bin/ps"   # pv-appengine parses busybox ps
mkdir -p "$I/volumes" "$I/storage" "$I/usr/lib/pantavisor/pvtx.d"
chroot "$I" ldconfig
if chroot "$I" ldd /usr/bin/pantavisor /usr/bin/pv-xconnect /usr/bin/pvtx /usr/lib/pantavisor/pv_lxc.so | grep -i "not found"; then
  echo "missing libraries in the image" >&2; exit 1
fi
step "docker import $TAG"
tar -C "$I" -c . | docker import -c 'ENTRYPOINT ["/usr/bin/pv-appengine"]' - "$TAG" >/dev/null
echo "built $TAG"

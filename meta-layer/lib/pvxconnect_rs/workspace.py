"""The pruned cargo workspace the pv-xconnect recipes build.

The repository's workspace also holds crates Yocto never builds (the Docker
harness, its Pantavisor imitation, end-to-end tests). Their dependencies are
in the repository's Cargo.lock, and some need a newer cargo than the layer's
(an `edition = "2024"` manifest fails cargo 1.81 as soon as it is vendored).
So the recipes build a copy of the workspace reduced to MEMBERS, with the
Cargo.lock of that reduced workspace, which the layer ships
(recipes-pv/pv-xconnect/files/pv-xconnect-rs-ws/Cargo.lock, written by the
repository's ci/gen-crates-inc.py). pv-xconnect-crates.inc lists exactly its
crates.

The same code assembles the workspace in the recipes' do_compile and in the
repository's checks (ci/gen-crates-inc.py, ci/check-pruned-build.sh), so what
CI resolves is what bitbake builds.
"""

import os
import re
import shutil

# Directories of the source tree that the pruned workspace keeps: the daemon
# (pv-xconnect), the examples (pv-examples) and the path crate their
# dev-dependencies name (pv-testkit): cargo resolves the dev-dependencies of
# every workspace member, even for `cargo build`, so they are in the lock.
MEMBERS = ("daemon", "examples-containers", "testkit")

# Where the recipes assemble it, relative to WORKDIR; the layer's Cargo.lock
# is unpacked there (file://pv-xconnect-rs-ws/Cargo.lock).
WS_DIR = "pv-xconnect-rs-ws"

_ARRAY = r'^(%s)[ \t]*=[ \t]*\[[^\]]*\]'


def manifest(root_toml, members=MEMBERS):
    """The root Cargo.toml `root_toml` (text) with its workspace `members`
    and `default-members` set to `members`; everything else (workspace
    dependencies, profiles, lints) kept byte for byte."""
    value = "[%s]" % ", ".join('"%s"' % m for m in members)
    def repl(m):
        return m.group(1) + " = " + value
    text, n = re.subn(_ARRAY % "members", repl, root_toml, count=1, flags=re.M)
    if n != 1:
        raise ValueError("root Cargo.toml has no `members = [...]` line")
    text = re.sub(_ARRAY % "default-members", repl, text, count=1, flags=re.M)
    return text


def assemble(src, dst, lock=None, members=MEMBERS):
    """Writes the pruned workspace of the source tree `src` into `dst`:
    dst/Cargo.toml (see manifest()), a fresh copy of each member directory
    (modification times kept, so cargo's fingerprints stay valid between
    builds), and `lock` copied to dst/Cargo.lock unless it is already there.
    A member's own target/ directory (a build of it alone) is not copied;
    anything else in `dst` is left alone (cargo's target directory lives
    elsewhere)."""
    with open(os.path.join(src, "Cargo.toml"), encoding="utf-8") as f:
        root = f.read()
    os.makedirs(dst, exist_ok=True)
    for m in members:
        if not os.path.isfile(os.path.join(src, m, "Cargo.toml")):
            raise FileNotFoundError("workspace member %s/Cargo.toml missing in %s" % (m, src))
        out = os.path.join(dst, m)
        if os.path.lexists(out):
            shutil.rmtree(out)
        top = os.path.join(src, m)
        shutil.copytree(top, out, symlinks=True,
                        ignore=lambda d, names, top=top: ["target"] if d == top and "target" in names else [])
    with open(os.path.join(dst, "Cargo.toml"), "w", encoding="utf-8") as f:
        f.write(manifest(root, members))
    if lock is not None:
        out = os.path.join(dst, "Cargo.lock")
        if not (os.path.exists(out) and os.path.samefile(lock, out)):
            shutil.copyfile(lock, out)

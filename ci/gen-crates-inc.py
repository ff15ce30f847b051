#!/usr/bin/env python3
"""Generate the pruned workspace's Cargo.lock and pv-xconnect-crates.inc of the layer.

The recipes build a copy of the workspace reduced to the crates bitbake
builds (meta-layer/lib/pvxconnect_rs/workspace.py: daemon, examples and the
path crate of their dev-dependencies), so harness-only crates, some of which
cargo 1.81 cannot even parse, are never vendored. This script

1. assembles that pruned workspace in a scratch directory from the source
   tree with its full Cargo.lock, and lets cargo drop the packages it no
   longer needs (`cargo metadata`: every remaining package keeps its locked
   version; nothing is re-resolved);
2. writes the result to meta-layer/recipes-pv/pv-xconnect/files/pv-xconnect-rs-ws/Cargo.lock,
   the lock the recipes build with (`cargo build --frozen`);
3. writes meta-layer/recipes-pv/pv-xconnect/pv-xconnect-crates.inc from it,
   byte for byte what poky's (scarthgap) cargo-update-recipe-crates class
   writes for `bitbake -c update_crates pv-xconnect` (its CARGO_LOCK_SRC_DIR
   is the pruned workspace): a header line, a `# from Cargo.lock` comment,
   one `crate://crates.io/<name>/<version>` SRC_URI entry per crates.io
   package in lock-file order, and one `SRC_URI[<name>-<version>.sha256sum]`
   line per package that has a checksum.

No bitbake and no network are needed (cargo reads the crates cached by a
`cargo fetch`/build of the workspace; it goes online only for missing ones).

Usage:
  ci/gen-crates-inc.py                 # from the working tree
  ci/gen-crates-inc.py --rev COMMIT    # from COMMIT's tree (SRCREV bumps)
  ci/gen-crates-inc.py --check         # exit 1 and show a diff if out of date
  ci/gen-crates-inc.py --check --rev SRCREV   # does SRCREV need a bump?
  ci/gen-crates-inc.py --stdout        # print crates.inc instead of writing
"""

import argparse
import difflib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "meta-layer", "lib"))
sys.dont_write_bytecode = True  # no __pycache__ in the layer
from pvxconnect_rs import workspace  # noqa: E402

RECIPE_PN = "pv-xconnect"
RECIPE_DIR = os.path.join(ROOT, "meta-layer", "recipes-pv", "pv-xconnect")
INC = os.path.join(RECIPE_DIR, f"{RECIPE_PN}-crates.inc")
LOCK = os.path.join(RECIPE_DIR, "files", workspace.WS_DIR, "Cargo.lock")
REGEN_CMD = "ci/gen-crates-inc.py"


def crates_block(lock_text: bytes, relpath: str) -> str:
    """One Cargo.lock's section, formatted exactly as get_crates() in
    poky's cargo-update-recipe-crates.bbclass formats it."""
    lock = tomllib.loads(lock_text.decode("utf-8"))
    candidates = [c for c in lock.get("package", []) if "crates.io" in c.get("source", "")]
    if not candidates:
        raise ValueError(f"no crates.io packages in {relpath}")
    out = f"# from {relpath}"
    out += '\nSRC_URI += " \\'
    cksums = ""
    for c in candidates:
        out += "\n    crate://crates.io/%s/%s \\" % (c["name"], c["version"])
        if "checksum" in c:
            cksums += '\nSRC_URI[%s-%s.sha256sum] = "%s"' % (c["name"], c["version"], c["checksum"])
    out += '\n"\n'
    out += cksums
    out += "\n"
    return out


def source_tree(rev, scratch):
    """The directory holding the workspace to prune: the checkout, or REV's
    root manifest, lock and member directories extracted from git."""
    if not rev:
        return ROOT
    src = os.path.join(scratch, "src")
    os.makedirs(src)
    paths = ["Cargo.toml", "Cargo.lock", *workspace.MEMBERS]
    tar = subprocess.run(["git", "-C", ROOT, "archive", "--format=tar", rev, "--", *paths],
                         capture_output=True)
    if tar.returncode != 0:
        sys.exit(f"gen-crates-inc: cannot read {' '.join(paths)} at {rev}: "
                 f"{tar.stderr.decode(errors='replace').strip()}")
    with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as t:
        if hasattr(tarfile, "data_filter"):
            t.extractall(src, filter="data")
        else:
            t.extractall(src)
    return src


def pruned_lock(rev=None) -> bytes:
    """The Cargo.lock of the pruned workspace of the tree (or of REV)."""
    with tempfile.TemporaryDirectory(prefix="pvx-prune.") as scratch:
        src = source_tree(rev, scratch)
        ws = os.path.join(scratch, workspace.WS_DIR)
        workspace.assemble(src, ws, os.path.join(src, "Cargo.lock"))
        cmd = ["cargo", "metadata", "--format-version", "1", "--manifest-path",
               os.path.join(ws, "Cargo.toml")]
        # Offline first: the crates of a built workspace are cached.
        r = subprocess.run(cmd + ["--offline"], capture_output=True, text=True)
        if r.returncode != 0:
            print("gen-crates-inc: offline resolution failed, retrying online:\n"
                  + r.stderr.strip(), file=sys.stderr)
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit("gen-crates-inc: cargo metadata of the pruned workspace failed:\n"
                         + r.stderr)
        with open(os.path.join(ws, "Cargo.lock"), "rb") as f:
            return f.read()


def generate_inc(lock: bytes) -> str:
    return f"# Autogenerated with 'bitbake -c update_crates {RECIPE_PN}'\n\n" \
        + crates_block(lock, "Cargo.lock")


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", help="prune this git commit's workspace instead of the working tree's")
    ap.add_argument("--check", action="store_true", help="fail if the committed files differ")
    ap.add_argument("--stdout", action="store_true", help="print crates.inc instead of writing")
    args = ap.parse_args()

    lock = pruned_lock(args.rev)
    inc = generate_inc(lock).encode("utf-8")
    n = inc.count(b"crate://crates.io/")
    if args.stdout:
        sys.stdout.write(inc.decode("utf-8"))
        return 0
    what = f"{args.rev}'s tree" if args.rev else "the working tree"
    if args.check:
        stale = []
        for path, new in ((LOCK, lock), (INC, inc)):
            old = read(path)
            if old != new:
                rel = os.path.relpath(path, ROOT)
                stale.append(rel)
                sys.stdout.writelines(difflib.unified_diff(
                    old.decode("utf-8").splitlines(True), new.decode("utf-8").splitlines(True),
                    rel + " (committed)", f"generated from {what}"))
        if not stale:
            print(f"pruned Cargo.lock and crates.inc match {what} ({n} crates)")
            return 0
        if args.rev:
            print(f"\nERROR: {', '.join(stale)} differ from what {what} needs: "
                  "the git build (SRCREV) would miss or mis-lock crates.\n"
                  "Commit the change of Cargo.lock/Cargo.toml, then run:  ci/bump-srcrev.sh HEAD\n"
                  "and commit the result.", file=sys.stderr)
        else:
            print(f"\nERROR: {', '.join(stale)} out of sync with {what}'s Cargo.lock "
                  "(crate list, versions or checksums differ).\n"
                  f"Regenerate with:  {REGEN_CMD}\nand commit the result.", file=sys.stderr)
        return 1
    os.makedirs(os.path.dirname(LOCK), exist_ok=True)
    for path, new in ((LOCK, lock), (INC, inc)):
        with open(path, "wb") as f:
            f.write(new)
        print(f"wrote {os.path.relpath(path, ROOT)}")
    print(f"{n} crates (pruned workspace of {what})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

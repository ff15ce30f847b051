#!/usr/bin/env python3
"""What bitbake's cargo sees, resolved offline: the layer's pruned workspace
against a vendor directory of exactly pv-xconnect-crates.inc's crates.

Mirrors poky's (scarthgap) cargo classes in a scratch directory:

1. assembles the pruned workspace from the working tree with the layer's
   files/pv-xconnect-rs-ws/Cargo.lock (meta-layer/lib/pvxconnect_rs, the code
   the recipes run before do_compile);
2. unpacks each crate of crates.inc from cargo's download cache
   (~/.cargo/registry/cache, filled by any build of the workspace) into a
   vendor directory, after checking its sha256 against crates.inc, and
   writes its `.cargo-checksum.json` as bitbake's crate fetcher does;
3. runs cargo with a fresh CARGO_HOME whose config replaces crates.io by that
   directory (as cargo_common_do_configure writes it), with `--frozen`:
   `cargo metadata` (cargo parses every vendored manifest, resolves the
   workspace, dev-dependencies included, and refuses any change of the lock).
   With --build also `cargo build --frozen -p pv-xconnect -p pv-examples --bins`
   (minutes; not run by ci/check-layer.sh).

This cargo is the machine's, not the mixin's 1.81: ci/check-msrv.py checks
what 1.81 needs of the same crates. Offline; no network at all.

Usage: ci/check-pruned-build.py [--build] [--keep]
"""

import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "meta-layer", "lib"))
sys.dont_write_bytecode = True  # no __pycache__ in the layer
from pvxconnect_rs import workspace  # noqa: E402

RECIPE_DIR = os.path.join(ROOT, "meta-layer", "recipes-pv", "pv-xconnect")
INC = os.path.join(RECIPE_DIR, "pv-xconnect-crates.inc")
LOCK = os.path.join(RECIPE_DIR, "files", workspace.WS_DIR, "Cargo.lock")


def inc_crates():
    """[(name, version, sha256)] of crates.inc."""
    with open(INC, encoding="utf-8") as f:
        text = f.read()
    sums = dict(re.findall(r'^SRC_URI\[(\S+)\.sha256sum\] = "([0-9a-f]{64})"$', text, re.M))
    out = []
    for name, ver in re.findall(r"^    crate://crates\.io/([^/\s]+)/(\S+) \\$", text, re.M):
        key = f"{name}-{ver}"
        if key not in sums:
            sys.exit(f"check-pruned-build: no sha256sum for {key} in crates.inc")
        out.append((name, ver, sums[key]))
    return out


def cached_crate(name, ver):
    home = os.environ.get("CARGO_HOME") or os.path.expanduser("~/.cargo")
    hits = glob.glob(os.path.join(home, "registry", "cache", "*", f"{name}-{ver}.crate"))
    return hits[0] if hits else None


def vendor(crates, vdir):
    missing = [f"{n}-{v}" for n, v, _ in crates if not cached_crate(n, v)]
    if missing:
        sys.exit(f"check-pruned-build: {len(missing)} crates not in cargo's cache "
                 f"(e.g. {', '.join(missing[:3])}): run `cargo fetch` in the repository first")
    os.makedirs(vdir)
    for name, ver, want in crates:
        path = cached_crate(name, ver)
        with open(path, "rb") as f:
            got = hashlib.sha256(f.read()).hexdigest()
        if got != want:
            sys.exit(f"check-pruned-build: {name}-{ver}: sha256 {got}, crates.inc says {want}")
        with tarfile.open(path) as t:
            if hasattr(tarfile, "data_filter"):
                t.extractall(vdir, filter="data")
            else:
                t.extractall(vdir)
        with open(os.path.join(vdir, f"{name}-{ver}", ".cargo-checksum.json"), "w") as f:
            json.dump({"files": {}, "package": got}, f)


def main():
    build = "--build" in sys.argv[1:]
    keep = "--keep" in sys.argv[1:]
    scratch = tempfile.mkdtemp(prefix="pvx-pruned.")
    try:
        crates = inc_crates()
        home = os.path.join(scratch, "cargo_home")
        vdir = os.path.join(home, "bitbake")
        vendor(crates, vdir)
        with open(os.path.join(home, "config.toml"), "w") as f:
            f.write(f'[source.bitbake]\ndirectory = "{vdir}"\n\n'
                    '[source.crates-io]\nreplace-with = "bitbake"\n'
                    'local-registry = "/nonexistent"\n\n'
                    '[net]\noffline = true\n')
        ws = os.path.join(scratch, workspace.WS_DIR)
        workspace.assemble(ROOT, ws, LOCK)
        env = dict(os.environ, CARGO_HOME=home, CARGO_TARGET_DIR=os.path.join(scratch, "target"))
        manifest = os.path.join(ws, "Cargo.toml")
        r = subprocess.run(["cargo", "metadata", "--frozen", "--format-version", "1",
                            "--manifest-path", manifest],
                           env=env, cwd=scratch, capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stderr, file=sys.stderr)
            print("FAIL: cargo --frozen cannot resolve the pruned workspace with only "
                  "crates.inc's crates (above). Regenerate with ci/gen-crates-inc.py; if "
                  "that does not help, a crate of the build is missing from the pruned "
                  "workspace (MEMBERS in meta-layer/lib/pvxconnect_rs/workspace.py).",
                  file=sys.stderr)
            return 1
        meta = json.loads(r.stdout)
        resolved = {(p["name"], p["version"]) for p in meta["packages"] if p["source"]}
        unused = {(n, v) for n, v, _ in crates} - resolved
        if unused:
            print(f"FAIL: crates.inc vendors crates cargo does not resolve: {sorted(unused)[:5]}",
                  file=sys.stderr)
            return 1
        members = sorted(p["name"] for p in meta["packages"] if p["source"] is None)
        print(f"check-pruned-build: cargo --frozen resolves the pruned workspace "
              f"({', '.join(members)}) from {len(crates)} vendored crates")
        if build:
            cmd = ["cargo", "build", "--frozen", "--release", "--manifest-path", manifest,
                   "-p", "pv-xconnect", "-p", "pv-examples", "--bins"]
            if subprocess.run(cmd, env=env, cwd=scratch).returncode != 0:
                print("FAIL: cargo build --frozen of the pruned workspace (above)", file=sys.stderr)
                return 1
            print("check-pruned-build: pv-xconnect and pv-examples built offline")
        return 0
    finally:
        if keep:
            print(f"check-pruned-build: kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

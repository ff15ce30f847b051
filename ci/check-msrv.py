#!/usr/bin/env python3
"""The daemon and the examples must build with the Rust of the pinned Yocto
mixin (PV_XCONNECT_RS_MSRV in meta-layer/recipes-pv/pv-xconnect/pv-xconnect-rs.inc).

No toolchain of that version can be installed on our machines (rustup cannot
download), so this checks what decides whether cargo of that version accepts
the build, from Cargo.lock and the manifests of the locked crates:

1. `rust-version` of pv-xconnect and pv-examples equals the MSRV.
2. Every crate in their build closure (normal and build dependencies, on
   the Linux targets the layer builds for) declares a `rust-version` <= MSRV:
   cargo refuses to compile a crate that needs a newer rustc.
3. Every crates.io package of the layer's pruned Cargo.lock
   (meta-layer/recipes-pv/pv-xconnect/files/pv-xconnect-rs-ws/Cargo.lock, the
   lock of the workspace the recipes build: daemon, examples, testkit; dev
   dependencies included) has an edition that cargo of the MSRV can parse:
   bitbake vendors all of crates.inc (that lock's crates) and cargo reads
   every vendored manifest, even of crates it does not build, so one
   `edition = "2024"` (Rust 1.85) fails the build. The harness's crates are
   not in that lock and may use any edition.
4. `cargo clippy` with `clippy::incompatible_msrv` on the two crates (lib
   and bins, what bitbake builds): std
   APIs newer than the MSRV (the lint reads `rust-version`).

Language features newer than the MSRV are not caught here (no 1.81 rustc):
meta-layer/README.md lists them for reviewers.

Usage: ci/check-msrv.py [--no-clippy]
"""

import json
import os
import re
import subprocess
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INC = os.path.join(ROOT, "meta-layer", "recipes-pv", "pv-xconnect", "pv-xconnect-rs.inc")
# What bitbake vendors (ci/gen-crates-inc.py writes it and crates.inc).
PRUNED_LOCK = os.path.join(ROOT, "meta-layer", "recipes-pv", "pv-xconnect", "files",
                           "pv-xconnect-rs-ws", "Cargo.lock")
CRATES = ("pv-xconnect", "pv-examples")
# Targets the layer builds for (Pantavisor's docker-x86_64, arm64 and arm
# boards). Crates only reachable on other targets (windows, wasm) are never
# compiled there.
TARGETS = ("x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu",
           "armv7-unknown-linux-gnueabihf")
# The editions cargo 1.81 can parse.
EDITIONS = {"2015", "2018", "2021"}


def version(s):
    return tuple(int(x) for x in s.split("."))


def msrv():
    with open(INC, encoding="utf-8") as f:
        m = re.search(r'^PV_XCONNECT_RS_MSRV = "([0-9.]+)"$', f.read(), re.M)
    if not m:
        sys.exit(f"check-msrv: no PV_XCONNECT_RS_MSRV in {os.path.relpath(INC, ROOT)}")
    return m.group(1)


def metadata(target=None):
    cmd = ["cargo", "metadata", "--format-version", "1", "--locked"]
    if target:
        cmd += ["--filter-platform", target]
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def build_closure(meta):
    """Package ids of CRATES and everything they build with on one target."""
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    roots = [p["id"] for p in meta["packages"] if p["name"] in CRATES and p["source"] is None]
    seen, todo = set(), list(roots)
    while todo:
        i = todo.pop()
        if i in seen:
            continue
        seen.add(i)
        for dep in nodes[i]["deps"]:
            if any(k["kind"] in (None, "build") for k in dep["dep_kinds"]):
                todo.append(dep["pkg"])
    return seen


def main():
    want = msrv()
    problems = []

    meta = metadata()
    pkgs = {p["id"]: p for p in meta["packages"]}
    for p in meta["packages"]:
        if p["source"] is None and p["name"] in CRATES and p["rust_version"] != want:
            problems.append(f"{p['name']}: rust-version {p['rust_version']}, want {want} "
                            "(PV_XCONNECT_RS_MSRV)")

    # The pruned lock's crates are a subset of the full lock's (ci/gen-crates-inc.py
    # only drops packages), so the full workspace's metadata has their manifests.
    with open(PRUNED_LOCK, "rb") as f:
        vendored = [(c["name"], c["version"]) for c in tomllib.load(f).get("package", [])
                    if "crates.io" in c.get("source", "")]
    by_nv = {(p["name"], p["version"]): p for p in meta["packages"] if p["source"]}
    for nv in vendored:
        p = by_nv.get(nv)
        if p is None:
            problems.append(f"{nv[0]} {nv[1]}: in the pruned lock but not in Cargo.lock: "
                            "regenerate it with ci/gen-crates-inc.py")
        elif p["edition"] not in EDITIONS:
            problems.append(f"{p['name']} {p['version']}: edition {p['edition']}: "
                            f"cargo {want} cannot parse its manifest (bitbake vendors it: "
                            "it is in the pruned workspace's lock)")

    closure = set()
    for t in TARGETS:
        closure |= build_closure(metadata(t))
    for i in sorted(closure):
        p = pkgs[i]
        rv = p.get("rust_version")
        if rv and version(rv) > version(want):
            problems.append(f"{p['name']} {p['version']}: rust-version {rv} > {want} "
                            "(in the daemon/examples build)")
    print(f"check-msrv: {len(closure)} crates in the daemon/examples build, "
          f"{len(vendored)} vendored by bitbake (pruned lock; "
          f"{sum(1 for p in meta['packages'] if p['source'])} in Cargo.lock), MSRV {want}")

    if "--no-clippy" not in sys.argv[1:]:
        # Libraries and binaries: what bitbake builds (tests need not build).
        cmd = ["cargo", "clippy", "--locked", "--lib", "--bins"]
        for c in CRATES:
            cmd += ["-p", c]
        cmd += ["--", "-D", "clippy::incompatible_msrv"]
        if subprocess.run(cmd, cwd=ROOT).returncode != 0:
            problems.append("clippy::incompatible_msrv: a std API newer than the MSRV (above)")

    if problems:
        for p in problems:
            print("MSRV:", p, file=sys.stderr)
        print("\nFix: keep rust-version at the mixin's Rust, and let cargo (>= 1.84) pick "
              "compatible versions:\n  cargo update   (with .cargo/config.toml's "
              "incompatible-rust-versions = \"fallback\")\nor pin one crate: "
              "cargo update -p CRATE --precise VERSION; then ci/gen-crates-inc.py. "
              "See meta-layer/README.md.", file=sys.stderr)
        return 1
    print("check-msrv: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Every example container the harness packages from examples-containers/ is
built the same way by the layer (meta-layer/classes/pv_example_container.bbclass):

- examples-containers/<name>/ and meta-layer/recipes-containers/pv-examples-rs/
  <name>_1.0.bb come in pairs, and the recipe inherits pv_example_container
  without overriding what the class takes from the folder;
- every file under <name>/rootfs/ is one the class fetches and installs (it
  walks rootfs/ as below: regular files and symlinks to files);
- harness.json asks only for what the layer honours ("binary"; the Debian
  packages of "debian_packages" are the recipe's IMAGE_INSTALL), and the
  program exists as a pv-examples-<name> package of pv-examples_git.bb.

ci/bitbake-parse.sh checks the same with real bitbake where layers exist.
"""

import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples-containers")
RECIPES = os.path.join(ROOT, "meta-layer", "recipes-containers", "pv-examples-rs")
CLASS = os.path.join(ROOT, "meta-layer", "classes", "pv_example_container.bbclass")
BINS = os.path.join(ROOT, "meta-layer", "recipes-pv", "pv-xconnect", "pv-examples_git.bb")
# harness.json keys the class honours, or that the recipe covers by hand.
LAYER_KEYS = {"binary", "debian_packages"}
# What a recipe must not touch: the class derives them from the folder.
CLASS_VARS = re.compile(r"^\s*(PV_EXAMPLE_ROOTFS_FILES|PV_EXAMPLE_BINARY|PV_EXAMPLE_DIR"
                        r"|SRC_URI:remove|ROOTFS_POSTPROCESS_COMMAND:remove)\b", re.M)


def walked(top):
    """What the class's pv_example_rootfs_files() lists (os.walk)."""
    out = set()
    for root, _dirs, names in os.walk(top):
        out |= {os.path.relpath(os.path.join(root, n), top) for n in names}
    return out


def main():
    problems = []
    with open(CLASS, encoding="utf-8") as f:
        cls = f.read()
    for needle in ('PV_EXAMPLE_ROOTFS_FILES = "${@pv_example_rootfs_files(d)}"',
                   "file://rootfs/%s;subdir=pv-example",
                   'ROOTFS_POSTPROCESS_COMMAND += "pv_example_install_rootfs;"'):
        if needle not in cls:
            problems.append(f"pv_example_container.bbclass no longer has {needle!r}")
    with open(BINS, encoding="utf-8") as f:
        m = re.search(r'^PV_EXAMPLES = "([^"]*)"', f.read(), re.M | re.S)
    packaged = set(m.group(1).replace("\\", " ").split()) if m else set()

    dirs = sorted(d for d in os.listdir(EXAMPLES) if d.startswith("pv-example-")
                  and os.path.isdir(os.path.join(EXAMPLES, d)))
    recipes = sorted(f[:-len("_1.0.bb")] for f in os.listdir(RECIPES) if f.endswith("_1.0.bb"))
    for name in sorted(set(recipes) - set(dirs)):
        problems.append(f"{name}: recipe without examples-containers/{name}/")
    n_files = 0
    for name in dirs:
        d = os.path.join(EXAMPLES, name)
        recipe = os.path.join(RECIPES, f"{name}_1.0.bb")
        if not os.path.isfile(recipe):
            problems.append(f"{name}: no recipe {os.path.relpath(recipe, ROOT)}")
            continue
        with open(recipe, encoding="utf-8") as f:
            text = f.read()
        if not re.search(r"^inherit\b.*\bpv_example_container\b", text, re.M):
            problems.append(f"{name}: recipe does not inherit pv_example_container")
        for m in CLASS_VARS.finditer(text):
            problems.append(f"{name}: recipe sets {m.group(1)}, which the class derives from the folder")

        tracked = subprocess.run(["git", "-C", ROOT, "ls-files", "--", f"examples-containers/{name}/rootfs"],
                                 check=True, capture_output=True, text=True).stdout.split()
        top = os.path.join(d, "rootfs")
        listed = walked(top)
        for t in tracked:
            rel = os.path.relpath(os.path.join(ROOT, t), top)
            n_files += 1
            if rel not in listed or not os.path.isfile(os.path.join(top, rel)):
                problems.append(f"{name}: rootfs/{rel} is not a file the layer installs "
                                "(directory symlink, special file, or missing)")

        binary = name
        hj = os.path.join(d, "harness.json")
        if os.path.isfile(hj):
            with open(hj, encoding="utf-8") as f:
                extras = json.load(f)
            for k in sorted(set(extras) - LAYER_KEYS):
                problems.append(f"{name}: harness.json key {k!r} is not honoured by the layer "
                                "(teach pv_example_container.bbclass, or put it in rootfs/)")
            if extras.get("debian_packages") and "IMAGE_INSTALL" not in text:
                problems.append(f"{name}: harness.json lists Debian packages "
                                f"{extras['debian_packages']}; the recipe has no IMAGE_INSTALL for them")
            binary = extras.get("binary") or name
        if binary.removeprefix("pv-example-") not in packaged:
            problems.append(f"{name}: program {binary} is not in PV_EXAMPLES of pv-examples_git.bb")

    for p in problems:
        print("examples:", p, file=sys.stderr)
    if problems:
        return 1
    print(f"examples: {len(dirs)} containers match their recipes; {n_files} rootfs/ files installed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

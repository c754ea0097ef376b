#!/usr/bin/env python3
"""tools/check_triton_manifest.py - checks a manifest.json written by tools/triton_aot.py
against the kernel sources, so generated code cannot drift from kernels/triton/*.py.

What it checks: format and version, Triton 3.6.x, every kernel's source hash equals the file's
sha256 now, signature and variants (constexprs, num_warps, num_stages, maxnreg) equal what the source
declares, and every variant has one target per built arch (from the kernel's min_arch to its max_arch) with
shared_bytes >= 0, registers > 0 and a kernel name. What it is not: a GPU test (tests/gpu/test_triton_aot.c runs the code).
Usage: check_triton_manifest.py build/generated/manifest.json [kernels/triton]   (exit 0 = ok)
"""
import hashlib
import importlib.util
import json
import os
import sys


def main():
    man_path = sys.argv[1]
    src_dir = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "kernels", "triton")
    m = json.load(open(man_path))
    errors = []
    if m.get("format") != "kiln-triton-manifest" or m.get("version") != 1:
        errors.append("not a version 1 kiln Triton manifest")
    if not str(m.get("triton_version", "")).startswith("3.6."):
        errors.append(f"Triton version {m.get('triton_version')} is not 3.6.x")
    sys.path.insert(0, src_dir)
    for k in m.get("kernels", []):
        path = os.path.join(src_dir, k["source"])
        data = open(path, "rb").read()
        if hashlib.sha256(data).hexdigest() != k["source_sha256"]:
            errors.append(f"{k['name']}: {k['source']} changed since generation; rebuild")
            continue
        spec = importlib.util.spec_from_file_location("m_" + k["source"][:-3], path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        decl = mod.AOT_KERNELS.get(k["name"])
        if decl is None:
            errors.append(f"{k['name']}: not declared in {k['source']}")
            continue
        if decl["signature"] != k["signature"]:
            errors.append(f"{k['name']}: signature differs from the source")
        if len(decl["variants"]) != len(k["variants"]):
            errors.append(f"{k['name']}: {len(k['variants'])} variants, source has {len(decl['variants'])}")
        for dv, mv in zip(decl["variants"], k["variants"]):
            for key in ("constexprs", "num_warps", "num_stages", "maxnreg"):
                if dv.get(key) != mv.get(key):
                    errors.append(f"{k['name']} variant {mv['index']}: {key} differs")
            lo, hi = int(decl.get("min_arch", 80)), int(decl.get("max_arch", 1 << 30))
            want = [a for a in m["archs"] if lo <= int(a[3:]) <= hi]
            if [t["target"] for t in mv["targets"]] != want:
                errors.append(f"{k['name']} variant {mv['index']}: targets differ from archs {want}")
            for t in mv["targets"]:
                if t["shared_bytes"] < 0 or t["registers"] <= 0 or not t["kernel_name"]:
                    errors.append(f"{k['name']} variant {mv['index']} {t['target']}: bad metadata {t}")
    for e in errors:
        print("check_triton_manifest: " + e, file=sys.stderr)
    print(f"check_triton_manifest: {len(m.get('kernels', []))} kernels, "
          f"{'ok' if not errors else str(len(errors)) + ' problems'}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

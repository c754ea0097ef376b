#!/usr/bin/env python3
"""tools/triton_aot.py - kiln's ahead-of-time compiler for the Triton kernels in kernels/triton.

What it is: a build tool. For every kernel file given (kernels/triton/*.py), it imports the file,
reads its AOT_KERNELS dict, and for each kernel, each declared variant (constexpr values,
num_warps, num_stages) and each target architecture, drives
    triton.compile(ASTSource(fn, signature, constexprs, attrs),
                   target=GPUTarget("cuda", arch, 32), options=...)
itself (no triton.tools.compile / link, whose `--target cuda:80:32` crashed). It writes into the
output folder:
    kiln_triton_kernels.h / .c   one typed launcher per kernel (kiln_triton_<kernel>()), the
                                 variant tables, and the embedded code and manifest;
    manifest.json                source hash, Triton version, signature, constexprs, num_warps,
                                 num_stages, shared memory, registers, target, entry name;
    code/<kernel>.v<i>.sm<arch>.ptx / .cubin   the PTX and the cubin for each variant and arch.
Code delivery (the choice kiln makes): Triton's PTX is assembled into a cubin by the CUDA
toolkit's ptxas (--ptxas; Triton is told to use it through TRITON_PTXAS_PATH) at build time, and
the cubins are embedded with `.incbin`. The PTX of the highest architecture is embedded as well,
for the driver to JIT on a GPU newer than every built architecture. Nothing binary is committed:
the Triton sources are the truth, and the build runs this tool.

What it is not: a runtime. Loading, the shared-memory check against the device, the module
table and launching live in src/backends/cuda/triton_rt.c; the generated launchers only check
their arguments and pack them.

Refused at generation, with a message: another Triton version than 3.6.x, kernels that need
global or profile scratch memory, more than one CTA per program, cooperative or PDL launches,
scalar types the launcher cannot pass exactly, tensor descriptors that Triton did not lower to
TMA, and PTX whose parameter list does not match the signature (+ the two hidden scratch pointers
Triton 3.6 appends).

Tensor descriptors (TMA): an argument typed "tensordesc<fp16[1, 1, BLOCK_N, BLOCK_D]>" (block
dims are integers or the variant's constexpr names) takes a kiln_triton_tensor in C; the
launcher encodes the CUtensorMap each image was compiled for (the metadata is kept per image) and
passes map, shape (i32) and strides (i64) as Triton's own launcher does. TMA needs sm_90: such a
kernel declares "min_arch": 90 and is compiled only for the targets at or above it (on older
GPUs it has no code, and kiln_triton_check says so).

Kernel file format:
    AOT_KERNELS = {
        "name": {"fn": <triton.jit fn>,
                 "signature": {"arg": "*fp16:16" | "i32" | "i64" | "fp32" | ... | "constexpr"},
                 "variants": [{"constexprs": {...}, "num_warps": 4, "num_stages": 2,
                               "maxnreg": 168}, ...],   # maxnreg: optional
                 "min_arch": 90,    # optional (default 80)
                 "max_arch": 90},   # optional: compiled up to this target only, with no PTX
                                    # for newer GPUs (wgmma code exists on sm_90a alone)
    }
A kernel written in Gluon (@gluon.jit, triton.experimental.gluon) is compiled the same way through
Gluon's front end; its descriptors take Gluon's default shared-memory layout for their block.
":16" on a pointer (or integer) promises 16-byte alignment (divisibility by 16); the launcher
checks that promise at run time.

Usage: triton_aot.py --out DIR --archs 80,86,89,90 [--ptxas PATH] [--jobs N] kernels/triton/*.py
       triton_aot.py --check-version     (exit 0 when the installed Triton is 3.6.x)
"""
import argparse
import concurrent.futures
import hashlib
import importlib.util
import json
import os
import re
import struct
import subprocess
import sys

REQUIRED_TRITON = "3.6."
# C type and PTX parameter width (bytes) of each scalar signature type the launcher can pass.
SCALAR_TYPES = {
    "i8": ("int8_t", 1), "u8": ("uint8_t", 1), "i16": ("int16_t", 2), "u16": ("uint16_t", 2),
    "i32": ("int32_t", 4), "u32": ("uint32_t", 4), "i64": ("int64_t", 8), "u64": ("uint64_t", 8),
    "fp32": ("float", 4), "fp64": ("double", 8),
}
PTX_PARAM_BYTES = {"u8": 1, "s8": 1, "b8": 1, "u16": 2, "s16": 2, "b16": 2, "u32": 4, "s32": 4,
                   "b32": 4, "f32": 4, "u64": 8, "s64": 8, "b64": 8, "f64": 8}


class AotError(Exception):
    pass


def check_triton_version():
    try:
        import triton
    except ImportError as e:
        raise AotError(f"python3 cannot import triton ({e}); pip install 'triton==3.6.*'")
    if not triton.__version__.startswith(REQUIRED_TRITON):
        raise AotError(
            f"kiln's Triton kernels are pinned to Triton {REQUIRED_TRITON}x but found "
            f"{triton.__version__} at {os.path.dirname(triton.__file__)}; install 3.6 "
            f"(pip install --target DIR 'triton==3.6.*') and point KILN_TRITON_PYTHONPATH at DIR")
    return triton.__version__


def load_module(path):
    name = "kiln_triton_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    spec.loader.exec_module(mod)
    if not hasattr(mod, "AOT_KERNELS"):
        raise AotError(f"{path} declares no AOT_KERNELS dict (see tools/triton_aot.py)")
    return mod


def parse_signature(kname, fn, sig):
    """-> list of dicts {name, type, align16, constexpr} in the function's argument order."""
    if list(sig.keys()) != list(fn.arg_names):
        raise AotError(f"kernel {kname}: signature keys {list(sig.keys())} must list the "
                       f"function's arguments in order {list(fn.arg_names)}")
    args = []
    for name, spec in sig.items():
        m = re.fullmatch(r"tensordesc<(\w+)\[([^\]]*)\]>", spec.replace(" ", ""))
        if m:
            block = [int(x) if x.isdigit() else x for x in m.group(2).split(",") if x]
            if not 1 <= len(block) <= 5:
                raise AotError(f"kernel {kname}: argument {name}: a tensor descriptor has rank 1 to 5")
            args.append({"name": name, "type": "tensordesc", "desc_dtype": m.group(1), "block": block,
                         "align16": False, "constexpr": False})
            continue
        ty, _, hint = spec.partition(":")
        if hint not in ("", "16"):
            raise AotError(f"kernel {kname}: argument {name}: only ':16' hints are supported")
        if ty != "constexpr" and not ty.startswith("*") and ty not in SCALAR_TYPES:
            raise AotError(f"kernel {kname}: argument {name} has type {ty}, which the launcher "
                           f"cannot pass exactly; use one of {sorted(SCALAR_TYPES)} or a pointer")
        args.append({"name": name, "type": ty, "align16": hint == "16",
                     "constexpr": ty == "constexpr"})
    return args


def ptx_params(ptx, entry):
    m = re.search(r"\.entry\s+" + re.escape(entry) + r"\s*\((.*?)\)", ptx, re.S)
    if not m:
        raise AotError(f"PTX has no .entry {entry}")
    widths = []
    for decl in m.group(1).split(","):
        if not decl.strip():
            continue
        t = re.search(r"\.(" + "|".join(PTX_PARAM_BYTES) + r")\b", decl)
        n = re.search(r"\[(\d+)\]", decl)
        if not t:
            raise AotError(f"PTX parameter {decl.strip()!r} of {entry} has no known type")
        widths.append(PTX_PARAM_BYTES[t.group(1)] * (int(n.group(1)) if n else 1))
    return widths


# Triton's device-side TMA element type -> the driver's CUtensorMapDataType (Triton's launcher
# maps them the same way: they differ for 8, 9 and 10).
TMA_DTYPE_DEVICE_TO_HOST = {8: 10, 9: 8, 10: 9}


def is_gluon(fn):
    """A kernel written in Gluon (@gluon.jit) rather than Triton's tl language."""
    return bool(getattr(fn, "is_gluon", lambda: False)())


def desc_signature(a, consts, what, gluon=False):
    dims = []
    for d in a["block"]:
        if isinstance(d, str):
            if d not in consts:
                raise AotError(f"{what}: argument {a['name']}: block dim {d} is not a constexpr of the variant")
            d = consts[d]
        dims.append(int(d))
    text = f"tensordesc<{a['desc_dtype']}[{', '.join(str(x) for x in dims)}]"
    if gluon:  # Gluon types the descriptor with its shared-memory layout: Gluon's default for the block
        from triton.experimental.gluon import language as gl
        elem = {"fp16": gl.float16, "bf16": gl.bfloat16, "fp32": gl.float32, "fp8e4nv": gl.float8e4nv,
                "fp8e5": gl.float8e5, "i8": gl.int8, "u8": gl.uint8}.get(a["desc_dtype"])
        if elem is None:
            raise AotError(f"{what}: argument {a['name']}: no Gluon layout for descriptor dtype {a['desc_dtype']}")
        text += f",{gl.NVMMASharedLayout.get_default_for(dims, elem)!r}"
    return text + ">", dims


def cubin_registers(cubin, entry):
    """Register count from the cubin's EIATTR_REGCOUNT record (.nv.info; each cubin Triton makes
    holds one function, `entry`)."""
    if cubin[:4] != b"\x7fELF" or cubin[4] != 2:
        return -1
    shoff, = struct.unpack_from("<Q", cubin, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", cubin, 0x3A)
    secs = [struct.unpack_from("<IIQQQQIIQQ", cubin, shoff + i * shentsize) for i in range(shnum)]
    stroff = secs[shstrndx][4]

    def name(off):
        end = cubin.index(b"\0", stroff + off)
        return cubin[stroff + off:end].decode()

    for s in secs:
        if name(s[0]) not in (".nv.info", ".nv.info." + entry):
            continue
        data, pos = cubin[s[4]:s[4] + s[5]], 0
        while pos + 2 <= len(data):
            fmt, attr = data[pos], data[pos + 1]
            pos += 2
            if fmt == 0x04:  # EIFMT_SVAL: u16 size, payload
                size, = struct.unpack_from("<H", data, pos)
                if attr == 0x2F and size >= 8:  # EIATTR_REGCOUNT: u32 symbol, u32 count
                    return struct.unpack_from("<I", data, pos + 6)[0]
                pos += 2 + size
            elif fmt == 0x03:  # EIFMT_HVAL
                pos += 2
            elif fmt == 0x02:  # EIFMT_BVAL
                pos += 1
    return -1


def compile_one(job):
    """Runs in a worker process: compile one (file, kernel, variant, arch)."""
    path, kname, vi, arch, outdir = job
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    mod = load_module(path)
    k = mod.AOT_KERNELS[kname]
    gluon = is_gluon(k["fn"])
    if gluon:  # a Gluon kernel (triton.experimental.gluon): same compiler, its own front end
        from triton.experimental.gluon._runtime import GluonASTSource as ASTSource
    v = k["variants"][vi]
    args = parse_signature(kname, k["fn"], k["signature"])
    consts = dict(v["constexprs"])
    for a in args:
        if a["constexpr"] and a["name"] not in consts:
            raise AotError(f"kernel {kname} variant {vi}: no value for constexpr {a['name']}")
    what = f"kernel {kname} variant {vi} ({consts}) sm_{arch}"
    sig, blocks = {}, []
    for a in args:
        if a["type"] == "tensordesc":
            sig[a["name"]], dims = desc_signature(a, consts, what, gluon)
            blocks.append(dims)
        else:
            sig[a["name"]] = "constexpr" if a["constexpr"] else a["type"]
    attrs = {(i,): [["tt.divisibility", 16]] for i, a in enumerate(args) if a["align16"]}
    target = GPUTarget("cuda", arch, 32)
    backend = triton.compiler.make_backend(target)
    opts = {"num_warps": v["num_warps"], "num_stages": v["num_stages"]}
    if "maxnreg" in v:  # registers per thread (warp-specialized kernels trade them between partitions)
        opts["maxnreg"] = int(v["maxnreg"])
    options = backend.parse_options(opts)
    src = ASTSource(fn=k["fn"], signature=sig, constexprs=consts, attrs=attrs)
    try:
        ck = triton.compile(src, target=target, options=options.__dict__)
    except Exception as e:  # Triton's own message says where in the kernel it failed
        raise AotError(f"kernel {kname} variant {vi} sm_{arch}: Triton failed: {e}")
    md = ck.metadata
    if getattr(md, "global_scratch_size", 0) > 0:
        raise AotError(f"{what} needs {md.global_scratch_size} bytes of global scratch memory, "
                       f"which kiln's launchers do not provide; change the kernel")
    if getattr(md, "profile_scratch_size", 0) > 0:
        raise AotError(f"{what} needs profile scratch memory (instrumentation); disable it")
    metas = list(getattr(md, "tensordesc_meta", None) or [])
    if len(metas) != len(blocks) or any(x is None for x in metas):
        raise AotError(f"{what}: Triton did not lower every tensor descriptor to TMA "
                       f"({len(blocks)} declared, metadata {metas}); TMA needs sm_90 ('min_arch': 90)")
    tma = []
    for meta, dims in zip(metas, blocks):
        # Triton may split a block into narrower boxes (a 128-wide fp16 row is loaded as two 64-wide
        # boxes under the 128-byte swizzle): the map is encoded with the box Triton chose.
        if len(meta["block_size"]) != len(dims) or meta.get("fp4_padded"):
            raise AotError(f"{what}: descriptor box {meta['block_size']} does not fit the declared {dims}")
        tma.append({"data_type": TMA_DTYPE_DEVICE_TO_HOST.get(meta["elem_type"], meta["elem_type"]),
                    "elem_size": int(meta["elem_size"]), "swizzle": int(meta["swizzle"]),
                    "block": [int(x) for x in meta["block_size"]]})
    if md.num_ctas != 1 or md.launch_cooperative_grid or md.launch_pdl:
        raise AotError(f"{what} needs num_ctas > 1, a cooperative or a PDL launch; kiln "
                       f"launches with cuLaunchKernel only")
    ptx, cubin = ck.asm["ptx"], ck.asm["cubin"]
    widths = ptx_params(ptx, md.name)
    want = []
    for a in args:
        if a["type"] == "tensordesc":  # CUtensorMap by value, shape (i32), strides (i64)
            want += [128] + [4] * len(a["block"]) + [8] * len(a["block"])
        elif not a["constexpr"]:
            want.append(8 if a["type"].startswith("*") else SCALAR_TYPES[a["type"]][1])
    want += [8, 8]  # global_scratch, profile_scratch: appended by Triton 3.6
    if widths != want:
        raise AotError(f"{what}: PTX parameters {widths} (bytes) do not match the signature "
                       f"{want}; the launcher would pass arguments wrongly")
    base = os.path.join(outdir, "code", f"{kname}.v{vi}.sm{arch}")
    with open(base + ".ptx", "w") as f:
        f.write(ptx)
    with open(base + ".cubin", "wb") as f:
        f.write(cubin)
    return {"kernel": kname, "variant": vi, "arch": arch, "entry": md.name,
            "shared_bytes": int(md.shared), "registers": cubin_registers(cubin, md.name),
            "num_warps": int(md.num_warps), "num_stages": int(md.num_stages), "tma": tma,
            "ptx": base + ".ptx", "cubin": base + ".cubin"}


def c_ident(s):
    return re.sub(r"[^A-Za-z0-9_]", "_", s)


def asm_blob(sym, path, nul):
    path = os.path.abspath(path).replace("\\", "/").replace('"', '\\"')
    zero = "\\n.byte 0" if nul else ""
    return (f'__asm__(".section .rodata\\n.balign 16\\n.hidden {sym}\\n.globl {sym}\\n{sym}:\\n'
            f'.incbin \\"{path}\\"{zero}\\n.hidden {sym}_end\\n.globl {sym}_end\\n{sym}_end:\\n'
            f'.previous");\n'
            f"extern const unsigned char {sym}[], {sym}_end[];\n")


def launcher_params(args):
    out = []
    for a in args:
        if a["constexpr"]:
            continue
        if a["type"] == "tensordesc":
            ctype = "const kiln_triton_tensor *"
        else:
            ctype = "void *" if a["type"].startswith("*") else SCALAR_TYPES[a["type"]][0] + " "
        out.append((ctype, a))
    return out


def write_outputs(outdir, kernels, results, archs, triton_version):
    by_key = {(r["kernel"], r["variant"], r["arch"]): r for r in results}
    top_arch = max(archs)
    manifest = {"format": "kiln-triton-manifest", "version": 1, "triton_version": triton_version,
                "archs": [f"sm_{a}" for a in archs],
                "code": "cubin per arch (toolkit ptxas at build time) + PTX of the highest arch "
                        "for driver JIT", "kernels": []}
    h = ["/* kiln_triton_kernels.h - GENERATED by tools/triton_aot.py; do not edit.",
         " * Typed launchers for kiln's ahead-of-time Triton kernels (see triton_rt.h). */",
         "#ifndef KILN_TRITON_KERNELS_H", "#define KILN_TRITON_KERNELS_H", "",
         '#include "backends/cuda/triton_rt.h"', "",
         "/* The manifest (JSON, NUL-terminated). */",
         "const char *kiln_triton_manifest(void);", ""]
    c = ["/* kiln_triton_kernels.c - GENERATED by tools/triton_aot.py; do not edit.",
         " * Kernel tables, embedded cubins/PTX (.incbin) and launchers. */",
         "#include <stdint.h>", "#include <stddef.h>", "",
         '#include "kiln_triton_kernels.h"', '#include "core/error.h"', "",
         asm_blob("kiln_triton_manifest_blob", os.path.join(outdir, "manifest.json"), True),
         "const char *kiln_triton_manifest(void) { return (const char *)kiln_triton_manifest_blob; }",
         ""]
    for kname, (path, src_hash, k) in kernels.items():
        args = k["args"]
        ident = c_ident(kname)
        kman = {"name": kname, "source": os.path.basename(path), "source_sha256": src_hash,
                "signature": k["signature"], "variants": []}
        karchs = [a for a in archs if (kname, 0, a) in by_key]  # at or above the kernel's min_arch
        entry = by_key[(kname, 0, karchs[0])]["entry"] if karchs else c_ident(k["fn"].__name__)
        var_rows = []
        for vi, v in enumerate(k["variants"]):
            names = list(v["constexprs"].keys())
            vals = [int(v["constexprs"][n]) for n in names]
            img_rows = []
            vman = {"index": vi, "constexprs": v["constexprs"], "num_warps": v["num_warps"],
                    "num_stages": v["num_stages"], "targets": []}
            tma = {}  # per arch: the image rows' "n, table" of descriptor encodings
            for arch in karchs:
                r = by_key[(kname, vi, arch)]
                sym = f"kiln_tb_{ident}_v{vi}_sm{arch}"
                c.append(asm_blob(sym, r["cubin"], False))
                tma[arch] = tma_table(c, f"{ident}_v{vi}_sm{arch}_tma", r["tma"])
                img_rows.append(f"  {{{arch}, 0, {sym}, {r['shared_bytes']}u, {r['registers']}, {tma[arch]}}},")
                vman["targets"].append({"target": f"sm_{arch}", "kernel_name": r["entry"],
                                        "shared_bytes": r["shared_bytes"],
                                        "registers": r["registers"],
                                        "num_warps": r["num_warps"],
                                        "num_stages": r["num_stages"],
                                        **({"tma": r["tma"]} if r["tma"] else {})})
            if karchs and "max_arch" not in k:  # (code for one architecture only: no PTX to JIT elsewhere)
                top = karchs[-1]
                r = by_key[(kname, vi, top)]
                sym = f"kiln_tp_{ident}_v{vi}_sm{top}"
                c.append(asm_blob(sym, r["ptx"], True))  # the PTX shares the top cubin's encodings
                img_rows.append(f"  {{{top}, 1, {sym}, {r['shared_bytes']}u, {r['registers']}, {tma[top]}}},")
            c.append(f"static const char *const {ident}_v{vi}_names[] = {{"
                     + ", ".join(f'"{n}"' for n in names) + "};")
            c.append(f"static const int64_t {ident}_v{vi}_values[] = {{"
                     + ", ".join(str(x) for x in vals) + "};")
            images = "0, NULL"  # no target at or above the kernel's min_arch was built
            if img_rows:
                c.append(f"static const kiln_triton_image {ident}_v{vi}_images[] = {{")
                c.extend(img_rows)
                c.append("};")
                images = (f"sizeof({ident}_v{vi}_images) / sizeof({ident}_v{vi}_images[0]), "
                          f"{ident}_v{vi}_images")
            # The launch takes every warp the kernel runs: a warp-specialized kernel's partitions
            # add warps to num_warps (Triton's metadata counts them all).
            warps = {by_key[(kname, vi, arch)]["num_warps"] for arch in karchs} or {v["num_warps"]}
            if len(warps) != 1:
                raise AotError(f"kernel {kname} variant {vi}: the targets disagree on the warp count {warps}")
            warps = warps.pop()
            desc = " ".join(f"{n}={x}" for n, x in zip(names, vals))
            desc += f" num_warps={v['num_warps']} num_stages={v['num_stages']}"
            if "maxnreg" in v:
                desc += f" maxnreg={v['maxnreg']}"
                vman["maxnreg"] = v["maxnreg"]
            if warps != v["num_warps"]:
                desc += f" warps={warps}"
            var_rows.append(f'  {{"{desc}", {warps}, {v["num_stages"]}, {len(names)}, '
                            f"{ident}_v{vi}_names, {ident}_v{vi}_values, {images}}},")
            kman["variants"].append(vman)
        manifest["kernels"].append(kman)
        params = launcher_params(args)
        c.append(f"static const kiln_triton_variant {ident}_variants[] = {{")
        c.extend(var_rows)
        c.append("};")
        kinds = "NULL"
        if any(a["type"] == "tensordesc" for _, a in params):
            kinds = f"{ident}_arg_kinds"
            c.append(f"static const uint8_t {kinds}[] = {{" + ", ".join(
                "KILN_TRITON_ARG_TENSOR" if a["type"] == "tensordesc" else "KILN_TRITON_ARG_VALUE"
                for _, a in params) + "};")
        c.append(f"const kiln_triton_kernel kiln_triton_{ident}_kernel = {{\"{kname}\", \"{entry}\", "
                 f"{len(params)}, sizeof({ident}_variants) / sizeof({ident}_variants[0]), "
                 f"{ident}_variants, {kinds}}};")
        proto_args = "".join(f", {ct}{a['name']}" for ct, a in params)
        proto = (f"kiln_status kiln_triton_{ident}(void *stream, int32_t variant, uint32_t grid_x, "
                 f"uint32_t grid_y, uint32_t grid_z{proto_args})")
        h.append(f"/* {kname} ({os.path.basename(path)}): {len(k['variants'])} variants. */")
        h.append(f"extern const kiln_triton_kernel kiln_triton_{ident}_kernel;")
        h.append(proto + ";")
        h.append("")
        c.append(proto + " {")
        for ct, a in params:
            if not a["align16"]:
                continue
            if a["type"].startswith("*"):
                c.append(f"  if (((uintptr_t){a['name']} % 16u) != 0)")
                c.append(f'    return kiln_error(KILN_ERR_INVALID_ARG, "{kname}: argument {a["name"]} '
                         f'must be 16-byte aligned (got %p); pass an aligned buffer", {a["name"]});')
            else:
                c.append(f"  if (({a['name']} % 16) != 0)")
                c.append(f'    return kiln_error(KILN_ERR_INVALID_ARG, "{kname}: argument {a["name"]} '
                         f'must be a multiple of 16 (got %lld)", (long long){a["name"]});')
        if params:
            c.append("  void *args[] = {" + ", ".join(
                f"(void *){a['name']}" if a["type"] == "tensordesc" else f"&{a['name']}"
                for _, a in params) + "};")
        else:
            c.append("  void **args = NULL;")
        c.append(f"  return kiln_triton_launch(&kiln_triton_{ident}_kernel, variant, grid_x, grid_y, "
                 f"grid_z, stream, args, {len(params)});")
        c.append("}")
        c.append("")
    h.append("#endif /* KILN_TRITON_KERNELS_H */")
    with open(os.path.join(outdir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=False)
        f.write("\n")
    write_if_changed(os.path.join(outdir, "kiln_triton_kernels.h"), "\n".join(h) + "\n")
    with open(os.path.join(outdir, "kiln_triton_kernels.c"), "w") as f:
        f.write("\n".join(c) + "\n")


def tma_table(c, sym, tma):
    """Emits an image's descriptor encodings (kiln_triton_tma[]); -> the row's "n, table"."""
    if not tma:
        return "0, NULL"
    rows = []
    for t in tma:
        block = ", ".join(str(x) for x in t["block"])
        rows.append(f"  {{{t['data_type']}, {t['elem_size']}, {t['swizzle']}, {len(t['block'])}, {{{block}}}}},")
    c.append(f"static const kiln_triton_tma {sym}[] = {{")
    c.extend(rows)
    c.append("};")
    return f"{len(tma)}, {sym}"


def write_if_changed(path, text):
    if os.path.exists(path) and open(path).read() == text:
        return
    with open(path, "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*")
    ap.add_argument("--out")
    ap.add_argument("--archs", default="80,86,89,90")
    ap.add_argument("--ptxas", help="the CUDA toolkit's ptxas (default: Triton's own)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--check-version", action="store_true")
    a = ap.parse_args()
    try:
        version = check_triton_version()
        if a.check_version:
            print(version)
            return 0
        if not a.out or not a.files:
            raise AotError("give --out DIR and at least one kernel file")
        archs = sorted({int(x) for x in re.split(r"[,;\s]+", a.archs.strip()) if x})
        for arch in archs:
            if arch < 80:
                raise AotError(f"sm_{arch}: kiln's Triton kernels need sm_80 or newer")
        if a.ptxas:
            if not os.access(a.ptxas, os.X_OK):
                raise AotError(f"--ptxas {a.ptxas} is not an executable")
            os.environ["TRITON_PTXAS_PATH"] = a.ptxas
        os.environ.setdefault("TRITON_CACHE_DIR", os.path.join(os.path.abspath(a.out), "triton-cache"))
        os.makedirs(os.path.join(a.out, "code"), exist_ok=True)
        kernels, jobs = {}, []
        for path in sorted(a.files):
            src_hash = hashlib.sha256(open(path, "rb").read()).hexdigest()
            mod = load_module(path)
            for kname, k in mod.AOT_KERNELS.items():
                if kname in kernels:
                    raise AotError(f"kernel {kname} is declared twice ({path})")
                if not k.get("variants"):
                    raise AotError(f"kernel {kname} in {path} declares no variants")
                args = parse_signature(kname, k["fn"], k["signature"])
                min_arch = int(k.get("min_arch", 80))
                if any(x["type"] == "tensordesc" for x in args) and min_arch < 90:
                    raise AotError(f"kernel {kname} takes tensor descriptors (TMA, sm_90 and newer): "
                                   f"declare \"min_arch\": 90")
                kernels[kname] = (path, src_hash, dict(k, args=args))
                for vi in range(len(k["variants"])):
                    max_arch = int(k.get("max_arch", 1 << 30))
                    for arch in (x for x in archs if min_arch <= x <= max_arch):
                        jobs.append((os.path.abspath(path), kname, vi, arch, os.path.abspath(a.out)))
        if a.jobs > 1:
            with concurrent.futures.ProcessPoolExecutor(max_workers=a.jobs) as ex:
                results = list(ex.map(compile_one, jobs))
        else:
            results = [compile_one(j) for j in jobs]
        write_outputs(os.path.abspath(a.out), kernels, results, archs, version)
    except AotError as e:
        print(f"triton_aot.py: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

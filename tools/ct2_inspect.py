#!/usr/bin/env python3
"""tools/ct2_inspect.py - read a CTranslate2 model.bin (binary version 6) and list its variables.

What it is: a small, dependency-free (numpy only) reader of the CTranslate2 model file layout,
used to check that downloaded faster-whisper checkpoints are complete and real. It is not a
converter (see tools/ct2_to_safetensors.py) and it never writes anything.

Layout (little-endian), read from the files themselves:
  u32 binary_version (6)
  str spec_name ("WhisperSpec")        str = u16 length incl. NUL, bytes, NUL
  u32 spec_revision (3)
  u32 n_variables
  n_variables x { str name; u8 rank; u32 dims[rank]; u8 dtype; u32 nbytes; u8 data[nbytes] }
  u32 n_aliases
  n_aliases x { str alias; str target_name }
dtype ids: 0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16.
Usage: python3 tools/ct2_inspect.py model.bin [--all]
"""
import struct
import sys

import numpy as np

DTYPES = {0: ("float32", np.float32), 1: ("int8", np.int8), 2: ("int16", np.int16),
          3: ("int32", np.int32), 4: ("float16", np.float16), 5: ("bfloat16", np.uint16)}


class Reader:
    def __init__(self, buf):
        self.buf = buf
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.buf):
            raise ValueError(f"truncated file: need {n} bytes at offset {self.pos}, "
                             f"file has {len(self.buf)}")
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def u8(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack("<H", self.take(2))[0]

    def u32(self):
        return struct.unpack("<I", self.take(4))[0]

    def string(self):
        n = self.u16()
        raw = self.take(n)
        if n == 0 or raw[-1] != 0:
            raise ValueError(f"string without NUL terminator at offset {self.pos - n}")
        return bytes(raw[:-1]).decode("utf-8")


def read_ct2(path):
    """Returns (spec_name, revision, {name: np.ndarray}, {alias: target})."""
    with open(path, "rb") as f:
        buf = memoryview(f.read())
    r = Reader(buf)
    version = r.u32()
    if version != 6:
        raise ValueError(f"{path}: binary version {version}, this reader knows version 6")
    spec = r.string()
    revision = r.u32()
    n = r.u32()
    variables = {}
    for _ in range(n):
        name = r.string()
        rank = r.u8()
        shape = tuple(r.u32() for _ in range(rank))
        dtype_id = r.u8()
        nbytes = r.u32()
        if dtype_id not in DTYPES:
            raise ValueError(f"{name}: unknown dtype id {dtype_id}")
        np_dtype = DTYPES[dtype_id][1]
        data = r.take(nbytes)
        count = int(np.prod(shape)) if rank else 1
        if count * np.dtype(np_dtype).itemsize != nbytes:
            raise ValueError(f"{name}: shape {shape} x {DTYPES[dtype_id][0]} != {nbytes} bytes")
        variables[name] = np.frombuffer(data, dtype=np_dtype).reshape(shape)
    n_alias = r.u32()
    aliases = {}
    for _ in range(n_alias):
        alias = r.string()
        aliases[alias] = r.string()
    if r.pos != len(buf):
        raise ValueError(f"{len(buf) - r.pos} trailing bytes after the alias table")
    return spec, revision, variables, aliases


def main():
    path = sys.argv[1]
    spec, revision, variables, aliases = read_ct2(path)
    print(f"spec {spec} revision {revision}: {len(variables)} variables, {len(aliases)} aliases")
    total = 0
    by_dtype = {}
    for name, v in variables.items():
        if v.ndim >= 1 and v.size > 1:
            total += v.size
        by_dtype[str(v.dtype)] = by_dtype.get(str(v.dtype), 0) + v.size
    print(f"parameters (tensors with >1 element): {total:,}; elements by dtype: {by_dtype}")
    for alias, target in aliases.items():
        print(f"alias {alias} -> {target}")
    show_all = "--all" in sys.argv
    for name, v in variables.items():
        if not show_all and ("layer_" in name and "layer_0/" not in name):
            continue
        vals = v.astype(np.float32) if v.dtype != np.uint16 else v
        stats = ""
        if v.size > 1 and v.dtype in (np.float16, np.float32):
            stats = f"mean {vals.mean():+.4f} std {vals.std():.4f} first {vals.ravel()[:3]}"
        elif v.size <= 16:
            stats = f"value {v.ravel().tolist()}"
        print(f"{name:60s} {str(v.dtype):8s} {str(v.shape):18s} {stats}")


if __name__ == "__main__":
    main()

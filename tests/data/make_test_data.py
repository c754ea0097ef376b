#!/usr/bin/env python3
"""tests/data/make_test_data.py - writes the small reference files that kiln's reader tests
load: safetensors and .npy files produced by the real libraries (safetensors, numpy), so the
tests check kiln against what those libraries write, not only against kiln's own writer.

Run from anywhere: python3 tests/data/make_test_data.py. Outputs are committed; rerun only when
adding cases. Values are deterministic (arange-based) and asserted by the C tests.
"""
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def ramp(shape, dtype, scale=0.25, offset=-1.0):
    n = int(np.prod(shape)) if len(shape) else 1
    return (np.arange(n, dtype=np.float64) * scale + offset).reshape(shape).astype(dtype)


def write_npy():
    np.save(os.path.join(HERE, "npy_f4.npy"), ramp((2, 3), np.float32))
    np.save(os.path.join(HERE, "npy_f2.npy"), ramp((4,), np.float16))
    np.save(os.path.join(HERE, "npy_i4.npy"), np.arange(-5, 7, dtype=np.int32).reshape(3, 4))
    np.save(os.path.join(HERE, "npy_i8.npy"), np.array([-(2**40), 0, 2**40 + 3], dtype=np.int64))
    np.save(os.path.join(HERE, "npy_i1.npy"), np.arange(-4, 4, dtype=np.int8).reshape(2, 2, 2))
    np.save(os.path.join(HERE, "npy_scalar.npy"), np.float32(3.5))
    np.save(os.path.join(HERE, "npy_empty.npy"), np.zeros((0, 5), dtype=np.float32))
    np.save(os.path.join(HERE, "npy_fortran.npy"), np.asfortranarray(ramp((2, 3), np.float32)))
    np.save(os.path.join(HERE, "npy_f8.npy"), ramp((2,), np.float64))
    # Version 2.0 header (numpy writes it for headers above 64 KiB; force it here).
    with open(os.path.join(HERE, "npy_v2.npy"), "wb") as f:
        np.lib.format.write_array(f, ramp((3, 2), np.float32), version=(2, 0))


def write_safetensors():
    from safetensors.numpy import save_file

    tensors = {
        "encoder.weight": ramp((4, 3), np.float32),
        "encoder.bias": ramp((4,), np.float16),
        "ids": np.arange(6, dtype=np.int64).reshape(2, 3),
        "mask": np.array([True, False, True]),
        "scalar": np.array(2.5, dtype=np.float32),
    }
    save_file(tensors, os.path.join(HERE, "tiny.safetensors"), metadata={"format": "np"})


if __name__ == "__main__":
    write_npy()
    write_safetensors()

#!/usr/bin/env python3
"""bench/gpu_mem.py - peak GPU memory of other processes, sampled with NVML (the driver's
libnvidia-ml.so.1 through ctypes; `nvidia-smi` when the library cannot be loaded).

What it is: GpuMemSampler, a thread that polls every interval (a) the memory NVML attributes to
the watched process ids (nvmlDeviceGetComputeRunningProcesses: the CUDA context, every
allocation and the allocators' caches) and (b) the device's used memory
(nvmlDeviceGetMemoryInfo), and keeps both peaks; (b) is reported as the rise over its value when
sampling began, which means something only when nothing else runs on that GPU. In containers
NVML may list host process ids that do not match ours: then only (b) is known. And a command
line that runs a command under the sampler (e.g. `kiln eval`, whose own summary holds the
planned, not the measured, bytes).
What it is not: exact (a peak shorter than the interval is missed), nor a profiler; and its
figures are not torch.cuda.max_memory_allocated(), which counts live tensors only.

usage: python3 bench/gpu_mem.py [--index 0] [--interval-ms 20] [--json FILE] -- CMD [ARGS...]
"""
import argparse
import ctypes
import json
import subprocess
import sys
import threading
import time


class _ProcInfo(ctypes.Structure):  # nvmlProcessInfo_t (v2 = v3 layout)
    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong),
                ("gpuInstanceId", ctypes.c_uint), ("computeInstanceId", ctypes.c_uint)]


class _ProcInfoV1(ctypes.Structure):
    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong)]


class _Memory(ctypes.Structure):  # nvmlMemory_t (v1)
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


class _Nvml:
    def __init__(self, index):
        self.lib = lib = ctypes.CDLL("libnvidia-ml.so.1")
        init = getattr(lib, "nvmlInit_v2", None) or lib.nvmlInit
        if init() != 0:
            raise OSError("nvmlInit failed")
        self.dev = ctypes.c_void_p()
        get = getattr(lib, "nvmlDeviceGetHandleByIndex_v2", None) or lib.nvmlDeviceGetHandleByIndex
        if get(ctypes.c_uint(index), ctypes.byref(self.dev)) != 0:
            raise OSError(f"NVML: no GPU at index {index}")
        self.procs_fn, self.proc_t = None, _ProcInfo
        for name in ("nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetComputeRunningProcesses_v2"):
            if hasattr(lib, name):
                self.procs_fn = getattr(lib, name)
                break
        if self.procs_fn is None:
            self.procs_fn, self.proc_t = lib.nvmlDeviceGetComputeRunningProcesses, _ProcInfoV1

    def used(self):
        m = _Memory()
        return m.used if self.lib.nvmlDeviceGetMemoryInfo(self.dev, ctypes.byref(m)) == 0 else None

    def processes(self):
        """{pid: bytes}"""
        n = ctypes.c_uint(64)
        buf = (self.proc_t * 64)()
        if self.procs_fn(self.dev, ctypes.byref(n), buf) != 0:
            return {}
        return {buf[i].pid: buf[i].usedGpuMemory for i in range(n.value)}

    def close(self):
        self.lib.nvmlShutdown()


class _Smi:
    def __init__(self, index):
        self.index = str(index)
        self.used()  # raises when nvidia-smi is missing

    def _query(self, what, fields):
        out = subprocess.run(["nvidia-smi", f"--query-{what}={fields}", "--format=csv,noheader,nounits",
                              "-i", self.index], capture_output=True, text=True, timeout=10, check=True).stdout
        return [line.split(",") for line in out.strip().splitlines() if line.strip()]

    def used(self):
        return int(self._query("gpu", "memory.used")[0][0]) << 20

    def processes(self):
        rows = self._query("compute-apps", "pid,used_memory")
        return {int(p): int(m) << 20 for p, m in rows if m.strip().isdigit()}

    def close(self):
        pass


class GpuMemSampler:
    """with GpuMemSampler(index) as s: s.watch(pid); ...; result = s.result()"""

    def __init__(self, index=0, interval_s=0.02):
        try:
            self.src, self.source = _Nvml(index), "nvml"
        except (OSError, AttributeError):
            try:
                self.src, self.source = _Smi(index), "nvidia-smi"
            except (OSError, subprocess.SubprocessError, IndexError, ValueError) as e:
                raise RuntimeError(f"no GPU memory figures: libnvidia-ml.so.1 does not load and nvidia-smi fails ({e})")
            interval_s = max(interval_s, 0.2)
        self.interval = interval_s
        self.pids = set()
        self.baseline = self.src.used()
        self.peak_used = self.baseline
        self.peak_proc = None
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def watch(self, pid):
        self.pids.add(pid)

    def _sample(self):
        used = self.src.used()
        if used is not None:
            self.peak_used = max(self.peak_used, used)
        procs = self.src.processes() if self.pids else {}
        mine = sum(v for p, v in procs.items() if p in self.pids)
        if any(p in self.pids for p in procs):
            self.peak_proc = max(self.peak_proc or 0, mine)
        self.samples += 1

    def _run(self):
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()
        self.src.close()

    def result(self):
        """process_peak_bytes: NVML's figure for the watched pids (None when they were never
        listed); device_peak_delta_bytes: device used memory peak minus the value at start."""
        return {"source": self.source, "interval_ms": round(self.interval * 1e3), "samples": self.samples,
                "process_peak_bytes": self.peak_proc,
                "device_baseline_bytes": self.baseline,
                "device_peak_delta_bytes": None if self.baseline is None else self.peak_used - self.baseline}


def best_bytes(r):
    """(bytes, how) from a result: the per-process figure when known, else the device rise."""
    if r.get("process_peak_bytes"):
        return r["process_peak_bytes"], "NVML process"
    if r.get("device_peak_delta_bytes") is not None:
        return r["device_peak_delta_bytes"], "device rise"
    return None, "unknown"


def main():
    ap = argparse.ArgumentParser(description="Run a command and report its peak GPU memory (NVML).")
    ap.add_argument("--index", type=int, default=0, help="NVML device index (default 0)")
    ap.add_argument("--interval-ms", type=float, default=20)
    ap.add_argument("--json", help="also write the figures there")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        ap.error("give the command after --")
    try:
        sampler = GpuMemSampler(args.index, args.interval_ms / 1e3)
    except RuntimeError as e:
        sys.exit(f"gpu_mem: {e}")
    with sampler as s:
        t = time.perf_counter()
        p = subprocess.Popen(cmd)
        s.watch(p.pid)
        rc = p.wait()
        wall = time.perf_counter() - t
    r = s.result() | {"command": cmd, "returncode": rc, "wall_seconds": wall}
    b, how = best_bytes(r)
    print(f"gpu_mem: peak {b / 2**20:.0f} MiB ({how}, {r['source']}, {r['samples']} samples); "
          f"rc {rc}, {wall:.1f} s" if b is not None else f"gpu_mem: no figure ({r})", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=1)
    sys.exit(rc)


if __name__ == "__main__":
    main()

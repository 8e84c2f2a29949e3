"""Let MKL use its fast matrix-product kernels on AMD processors.

PyTorch's CPU wheels do fp32 and fp64 matrix products with Intel MKL, which runs its generic code
path (about half the speed) on processors that are not Intel's: on the 2-core AMD EPYC of
``docs/benchmarks.md`` a 128 x 256 x 256 product takes 87 µs instead of 42 µs, and the ring
networks' iterations are mostly such products. MKL picks its path through one function,
``mkl_serv_intel_cpu_true``, which the wheel exports; a one-line library that returns 1 from it,
loaded into the global symbol scope *before* torch, makes MKL choose its kernels from the CPU's
features (AVX-512, AVX2) instead. It is the known workaround for MKL on AMD; no library offers
it, hence this module. The products stay correct (``tests/test_mkl_on_amd.py`` checks them and
an eigenvalue problem against float64 references); like any change of BLAS kernel, they round
differently in the last bits.

``train.py`` calls :func:`enable` before importing torch. It does nothing (and says why in its
return value) when the CPU is not AMD, torch is already imported, no C compiler is available,
or ``GAN_DYNAMICS_MKL_AMD=0`` is set. In a script of your own, before ``import torch``::

    import mkl_on_amd; mkl_on_amd.enable()

This module must not import torch.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ENV = "GAN_DYNAMICS_MKL_AMD"
SOURCE = "int mkl_serv_intel_cpu_true(void) { return 1; }\n"

#: what the last call of :func:`enable` did, for logs and benchmark records
status = "not requested"


def cpu_vendor(cpuinfo: str | None = None) -> str:
    """The ``vendor_id`` of /proc/cpuinfo (``AuthenticAMD``, ``GenuineIntel``), or '' if unknown."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "vendor_id":
            return value.strip()
    return ""


def reason_not_to(environ=os.environ, modules=sys.modules, vendor: str | None = None) -> str | None:
    """Why :func:`enable` would do nothing, or None when it applies."""
    if environ.get(ENV, "1") == "0":
        return f"off ({ENV}=0)"
    if "torch" in modules:
        return "torch was imported before mkl_on_amd.enable()"
    if (vendor if vendor is not None else cpu_vendor()) != "AuthenticAMD":
        return "not an AMD CPU"
    return None


def cache_dir() -> Path:
    return Path(os.environ.get("GAN_DYNAMICS_CACHE", Path.home() / ".cache" / "gan-dynamics"))


def build(folder: Path) -> Path:
    """Compile the one-function library into ``folder`` (once; atomic under concurrent processes)."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise FileNotFoundError("no C compiler (cc or gcc) on PATH")
    target = folder / f"libmkl_on_amd_{hashlib.sha1(SOURCE.encode()).hexdigest()[:10]}.so"
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        src, lib = Path(tmp) / "shim.c", Path(tmp) / "shim.so"
        src.write_text(SOURCE)
        subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(lib), str(src)], check=True,
                       capture_output=True, timeout=60)
        os.replace(lib, target)
    return target


def enable() -> bool:
    """Load the library before torch when it applies; returns whether it did. ``status`` says why not."""
    global status
    if status.startswith("on"):  # loaded by an earlier call (train.py imported by a script that called it)
        return True
    reason = reason_not_to()
    if reason is None:
        try:
            ctypes.CDLL(str(build(cache_dir() / "mkl_on_amd")), mode=ctypes.RTLD_GLOBAL)
        except (OSError, subprocess.SubprocessError) as err:
            reason = f"could not build or load the library: {err}"
    status = reason or "on: MKL uses its AVX-512/AVX2 kernels on this AMD CPU"
    return reason is None

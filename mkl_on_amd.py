"""Let MKL use its fast matrix-product kernels on AMD processors.

PyTorch's CPU wheels do fp32 and fp64 matrix products with Intel MKL, which runs its generic code
path on processors that are not Intel's (about half the speed: ``docs/benchmarks.md``), and the
ring networks' iterations are mostly such products. MKL picks its path through one function,
``mkl_serv_intel_cpu_true``, which the wheel exports; a one-line library that returns 1 from it,
loaded into the global symbol scope *before* torch, makes MKL choose its kernels from the CPU's
features (AVX-512, AVX2) instead. It is the known workaround for MKL on AMD; no library offers
it, hence this module. The products stay correct (``tests/test_mkl_on_amd.py`` checks them and
an eigenvalue problem against float64 references); like any change of BLAS kernel, they round
differently in the last bits. No environment variable does the same for the MKL that torch
bundles (oneMKL 2024.2 in torch 2.14): ``MKL_DEBUG_CPU_TYPE`` went with MKL 2020.1, and
``MKL_ENABLE_INSTRUCTIONS`` only selects among Intel code paths.

``train.py`` calls :func:`enable` before importing torch. It never fails a run: whatever happens,
``status`` says what it did or why not, and training goes on (with MKL's generic path when the
library is not loaded). It does nothing when ``GAN_DYNAMICS_MKL_AMD=0`` is set, torch is already
imported, the system is not Linux with glibc, or the CPU is not AMD. It compiles the library with
the C compiler of ``CC`` (else ``cc``, ``gcc`` or ``clang``) into ``$GAN_DYNAMICS_CACHE/mkl_on_amd``
(default ``~/.cache/gan-dynamics``) once; a cache that cannot be written gets a library built in a
temporary folder for this run. Without a compiler it uses a library already in the cache, or one
preloaded with ``LD_PRELOAD`` (``status`` then starts with ``preloaded``). In a script of your own,
before ``import torch``::

    import mkl_on_amd; mkl_on_amd.enable()

This module must not import torch.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ENV = "GAN_DYNAMICS_MKL_AMD"
SYMBOL = "mkl_serv_intel_cpu_true"
SOURCE = f"int {SYMBOL}(void) {{ return 1; }}\n"
COMPILE_TIMEOUT_S = 60.0

#: what the last call of :func:`enable` did, for logs and benchmark records: "on: ..." when it
#: loaded the library, "preloaded: ..." when LD_PRELOAD had, "could not ...: ..." when it applies
#: but failed, and otherwise why it does not apply
status = "not requested"


class BuildError(RuntimeError):
    """The library could not be compiled (no compiler, or the compiler failed)."""


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


def libc() -> str:
    """The C library, e.g. ``glibc 2.36``; '' where it is not glibc (musl, macOS, Windows)."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, ValueError, OSError):
        return ""


def reason_not_to(environ=None, modules=None, vendor: str | None = None, platform: str | None = None,
                  libc_version: str | None = None) -> str | None:
    """Why :func:`enable` would do nothing, or None when it applies. Each argument stands in for
    the real value (``os.environ``, ``sys.modules``, :func:`cpu_vendor`, ``sys.platform``, :func:`libc`)."""
    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
    platform = sys.platform if platform is None else platform
    if environ.get(ENV, "1") == "0":
        return f"off ({ENV}=0)"
    if "torch" in modules:
        return "torch was imported before mkl_on_amd.enable()"
    if not platform.startswith("linux"):
        return f"not Linux ({platform}): the workaround is for torch's Linux wheels"
    if (vendor if vendor is not None else cpu_vendor()) != "AuthenticAMD":
        return "not an AMD CPU"
    found = libc() if libc_version is None else libc_version
    if not found.startswith("glibc"):
        kind = "musl" if list(Path("/lib").glob("ld-musl-*")) else "unknown"
        return f"not glibc ({kind} C library): torch's MKL wheels are built for glibc"
    return None


def cache_dir() -> Path:
    """``$GAN_DYNAMICS_CACHE``, else ``~/.cache/gan-dynamics``."""
    return Path(os.environ.get("GAN_DYNAMICS_CACHE") or Path.home() / ".cache" / "gan-dynamics")


def library_name() -> str:
    return f"libmkl_on_amd_{hashlib.sha1(SOURCE.encode()).hexdigest()[:10]}.so"


def compiler() -> list[str]:
    """The compiler command: ``$CC`` (split like a shell word list), else cc, gcc or clang on PATH."""
    given = os.environ.get("CC", "").strip()
    if given:
        command = shlex.split(given)
        if shutil.which(command[0]) is None:
            raise BuildError(f"CC={given!r} is not a program on PATH")
        return command
    for name in ("cc", "gcc", "clang"):
        if found := shutil.which(name):
            return [found]
    raise BuildError("no C compiler (CC, cc, gcc or clang) on PATH")


def build(folder: Path) -> Path:
    """The one-function library in ``folder``: an existing one (no compiler needed), else compiled
    there (atomic under concurrent processes). Raises BuildError, or OSError if ``folder`` is not writable."""
    target = folder / library_name()
    if target.is_file():
        return target
    command = compiler()
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        src, lib = Path(tmp) / "shim.c", Path(tmp) / "shim.so"
        src.write_text(SOURCE)
        try:
            subprocess.run([*command, "-shared", "-fPIC", "-O2", "-o", str(lib), str(src)], check=True,
                           capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
        except subprocess.CalledProcessError as err:
            said = (err.stderr or err.stdout or "").strip().splitlines()
            raise BuildError(f"{command[0]} failed (exit {err.returncode})" + (f": {said[-1]}" if said else "")) from None
        except subprocess.TimeoutExpired:
            raise BuildError(f"{command[0]} took over {COMPILE_TIMEOUT_S:g} s") from None
        except OSError as err:  # the compiler could not be started
            raise BuildError(f"{command[0]} could not run: {err}") from None
        if not lib.is_file():
            raise BuildError(f"{command[0]} exited 0 but wrote no library")
        os.replace(lib, target)
    return target


def _load(lib: Path) -> None:
    ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)


def preloaded() -> bool:
    """Whether a library in the global symbol scope (LD_PRELOAD) already defines the function."""
    try:
        return hasattr(ctypes.CDLL(None), SYMBOL)
    except (OSError, TypeError):
        return False


def _enable(facts: dict) -> str:
    reason = reason_not_to(**facts)
    modules = facts.get("modules")
    if "torch" not in (sys.modules if modules is None else modules) and preloaded():
        return (f"preloaded: {SYMBOL} comes from a library in LD_PRELOAD, so MKL takes its AVX-512/AVX2 "
                f"kernels where the CPU has them (take it out of LD_PRELOAD to turn it off)")
    if reason is not None:
        return reason
    on = "on: MKL uses its AVX-512/AVX2 kernels on this AMD CPU"
    folder = cache_dir() / "mkl_on_amd"
    try:
        lib = build(folder)
    except BuildError as err:
        return (f"could not build the library: {err}; MKL keeps its generic path (without a compiler, put a "
                f"built {library_name()} in {folder} or preload one with LD_PRELOAD)")
    except OSError as err:  # the cache cannot be written: build in a temporary folder for this run
        try:
            with tempfile.TemporaryDirectory(prefix="mkl_on_amd_") as tmp:
                _load(build(Path(tmp)))  # the loaded library stays mapped once its file is gone
        except BuildError as err2:
            return f"could not build the library: {err2}; MKL keeps its generic path"
        except OSError as err2:
            return (f"could not build the library: the cache {folder} ({err.strerror or err}) and a temporary "
                    f"folder ({err2.strerror or err2}) cannot be used; MKL keeps its generic path")
        return f"{on} (built in a temporary folder: the cache {folder} is not writable: {err.strerror or err})"
    try:
        _load(lib)
    except OSError as err:
        return f"could not load {lib}: {err}; MKL keeps its generic path (delete the file to rebuild it)"
    return on


def enable(**facts) -> bool:
    """Load the library before torch when it applies; returns whether MKL will take its fast path
    (loaded here or preloaded). ``status`` says what happened. Never raises. ``facts`` (environ,
    modules, vendor, platform, libc_version) stand in for the real values, as in :func:`reason_not_to`."""
    global status
    if status.startswith(("on", "preloaded")):  # an earlier call did it (train.py imported by a script that called it)
        return True
    try:
        status = _enable(facts)
    except Exception as err:  # noqa: BLE001 (never fail a run: MKL's generic path is slower, not wrong)
        status = f"could not enable: {type(err).__name__}: {err}; MKL keeps its generic path"
    return status.startswith(("on", "preloaded"))

"""mkl_on_amd: when it applies, that its library does what it claims, that MKL's products stay
correct with it (against float64 references computed by numpy's own BLAS), and that no failure
(no compiler, a failing compiler, a cache it cannot write, another platform or C library, a library
that does not load) ever fails a run: each ends in ``status`` saying so.

The AMD path is forced on any CPU where needed: ``enable(vendor="AuthenticAMD", modules={})``
makes it act as before torch on an AMD CPU. In this process (torch loaded) nothing is dlopened
(``_load`` is replaced), except a file that cannot load; subprocesses load the real library."""
import ctypes
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mkl_on_amd

ROOT = Path(__file__).resolve().parents[1]
AMD = mkl_on_amd.cpu_vendor() == "AuthenticAMD"
COMPILER = shutil.which("cc") or shutil.which("gcc")
LINUX_GLIBC = sys.platform.startswith("linux") and mkl_on_amd.libc().startswith("glibc")
AS_AMD = {"vendor": "AuthenticAMD", "modules": {}, "environ": {}}  # an AMD CPU, torch not yet imported
needs_compiler = pytest.mark.skipif(COMPILER is None, reason="no C compiler")
needs_linux = pytest.mark.skipif(not LINUX_GLIBC, reason="needs Linux with glibc")


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """A first call of enable(), with its cache in tmp_path; loads are recorded, not done."""
    loaded = []
    monkeypatch.setattr(mkl_on_amd, "status", "not requested")
    monkeypatch.setattr(mkl_on_amd, "_load", loaded.append)
    monkeypatch.setattr(mkl_on_amd, "preloaded", lambda: False)
    monkeypatch.setenv("GAN_DYNAMICS_CACHE", str(tmp_path / "cache"))
    return loaded


def no_compiler(monkeypatch, tmp_path):
    empty = tmp_path / "empty_bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("CC", raising=False)


def fake_compiler(tmp_path, body: str) -> str:
    script = tmp_path / "fake_cc"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


def test_vendor_is_read_from_cpuinfo():
    text = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\n"
    assert mkl_on_amd.cpu_vendor(text) == "AuthenticAMD"
    assert mkl_on_amd.cpu_vendor("processor\t: 0\n") == ""


@needs_linux
def test_it_applies_only_to_amd_before_torch_unless_turned_off():
    fresh = {"os": os}
    assert mkl_on_amd.reason_not_to({}, fresh, "AuthenticAMD") is None
    assert mkl_on_amd.reason_not_to({mkl_on_amd.ENV: "0"}, fresh, "AuthenticAMD") == "off (GAN_DYNAMICS_MKL_AMD=0)"
    assert "torch was imported" in mkl_on_amd.reason_not_to({}, {"torch": os}, "AuthenticAMD")
    assert mkl_on_amd.reason_not_to({}, fresh, "GenuineIntel") == "not an AMD CPU"
    # here, in pytest, torch is loaded already: enable() refuses and says so
    assert not mkl_on_amd.enable()
    assert mkl_on_amd.status.startswith(("off", "torch was imported"))


@needs_compiler
def test_the_library_answers_that_the_cpu_is_intel_and_is_built_once(tmp_path):
    lib = mkl_on_amd.build(tmp_path)
    assert ctypes.CDLL(str(lib)).mkl_serv_intel_cpu_true() == 1
    stamp = lib.stat().st_mtime_ns
    assert mkl_on_amd.build(tmp_path) == lib and lib.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [lib.name]  # no temporary files left


# -- the AMD path on any CPU: each failure ends in status, never in an exception ----------------

@needs_linux
@needs_compiler
def test_on_amd_it_builds_into_the_cache_and_loads(fresh, tmp_path):
    assert mkl_on_amd.enable(**AS_AMD)
    assert mkl_on_amd.status == "on: MKL uses its AVX-512/AVX2 kernels on this AMD CPU"
    assert fresh == [tmp_path / "cache" / "mkl_on_amd" / mkl_on_amd.library_name()]
    assert mkl_on_amd.enable(**AS_AMD) and len(fresh) == 1  # a second call has nothing to do


@needs_linux
def test_no_compiler_is_said_and_the_run_goes_on(fresh, tmp_path, monkeypatch):
    no_compiler(monkeypatch, tmp_path)
    assert not mkl_on_amd.enable(**AS_AMD)
    assert mkl_on_amd.status.startswith("could not build the library: no C compiler (CC, cc, gcc or clang) on PATH")
    assert "LD_PRELOAD" in mkl_on_amd.status and fresh == []


@needs_linux
def test_a_library_already_in_the_cache_needs_no_compiler(fresh, tmp_path, monkeypatch):
    lib = tmp_path / "cache" / "mkl_on_amd" / mkl_on_amd.library_name()
    lib.parent.mkdir(parents=True)
    lib.write_bytes(b"built elsewhere")
    no_compiler(monkeypatch, tmp_path)
    assert mkl_on_amd.enable(**AS_AMD) and fresh == [lib]


@needs_linux
@pytest.mark.parametrize("cc,said", [
    ("exit 1", "failed (exit 1)"),
    ("echo 'shim.c:1: error: boom' >&2; exit 4", "failed (exit 4): shim.c:1: error: boom"),
    ("exit 0", "exited 0 but wrote no library"),
])
def test_a_failing_compiler_is_said_and_the_run_goes_on(fresh, tmp_path, monkeypatch, cc, said):
    monkeypatch.setenv("CC", fake_compiler(tmp_path, cc))
    assert not mkl_on_amd.enable(**AS_AMD)
    assert mkl_on_amd.status.startswith("could not") and said in mkl_on_amd.status, mkl_on_amd.status
    assert fresh == [] and not list((tmp_path / "cache" / "mkl_on_amd").glob("*.so"))


@needs_linux
def test_a_compiler_that_hangs_or_is_missing_is_said(fresh, tmp_path, monkeypatch):
    monkeypatch.setattr(mkl_on_amd, "COMPILE_TIMEOUT_S", 0.3)
    monkeypatch.setenv("CC", fake_compiler(tmp_path, "sleep 5"))
    assert not mkl_on_amd.enable(**AS_AMD)
    assert "took over 0.3 s" in mkl_on_amd.status
    monkeypatch.setattr(mkl_on_amd, "status", "not requested")
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    assert not mkl_on_amd.enable(**AS_AMD)
    assert "is not a program on PATH" in mkl_on_amd.status


def unwritable_folders(tmp_path) -> list[Path]:
    """Folders that cannot be created or written: under a file (for anyone), read-only (for a
    user other than root, whom permissions do not stop)."""
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    folders = [a_file / "cache"]
    ro = tmp_path / "read_only"
    ro.mkdir()
    ro.chmod(0o555)
    if not os.access(ro, os.W_OK):
        folders.append(ro)
    return folders


@needs_linux
@needs_compiler
def test_a_cache_it_cannot_write_gets_a_temporary_build(fresh, tmp_path, monkeypatch):
    for folder in unwritable_folders(tmp_path):
        monkeypatch.setattr(mkl_on_amd, "status", "not requested")
        monkeypatch.setenv("GAN_DYNAMICS_CACHE", str(folder))
        fresh.clear()
        assert mkl_on_amd.enable(**AS_AMD), mkl_on_amd.status
        assert mkl_on_amd.status.startswith("on: ") and "built in a temporary folder" in mkl_on_amd.status
        assert f"the cache {folder / 'mkl_on_amd'} is not writable" in mkl_on_amd.status
        assert len(fresh) == 1 and not fresh[0].exists()  # built, loaded, and its file removed again


@needs_linux
@needs_compiler
def test_no_writable_folder_at_all_is_said(fresh, tmp_path, monkeypatch):
    folder = unwritable_folders(tmp_path)[0]
    monkeypatch.setenv("GAN_DYNAMICS_CACHE", str(folder))
    monkeypatch.setattr(mkl_on_amd.tempfile, "tempdir", str(folder))
    assert not mkl_on_amd.enable(**AS_AMD)
    assert mkl_on_amd.status.startswith("could not build the library: the cache") and "temporary" in mkl_on_amd.status
    assert fresh == []


@pytest.mark.parametrize("platform", ["darwin", "win32", "freebsd14"])
def test_other_platforms_are_said(fresh, monkeypatch, platform):
    monkeypatch.setattr(mkl_on_amd, "build", lambda folder: pytest.fail("no build on " + platform))
    assert not mkl_on_amd.enable(**AS_AMD, platform=platform)
    assert mkl_on_amd.status == f"not Linux ({platform}): the workaround is for torch's Linux wheels"


def test_musl_is_said(fresh, monkeypatch):
    monkeypatch.setattr(mkl_on_amd, "build", lambda folder: pytest.fail("no build on musl"))
    assert not mkl_on_amd.enable(**AS_AMD, platform="linux", libc_version="")
    assert mkl_on_amd.status.startswith("not glibc (") and "torch's MKL wheels are built for glibc" in mkl_on_amd.status


@needs_linux
def test_a_library_that_does_not_load_is_said(fresh, tmp_path, monkeypatch):
    lib = tmp_path / "cache" / "mkl_on_amd" / mkl_on_amd.library_name()
    lib.parent.mkdir(parents=True)
    lib.write_bytes(b"not an ELF file")
    monkeypatch.setattr(mkl_on_amd, "_load", lambda path: ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL))
    assert not mkl_on_amd.enable(**AS_AMD)
    assert mkl_on_amd.status.startswith(f"could not load {lib}: ") and "delete the file" in mkl_on_amd.status


@needs_linux
def test_anything_unexpected_is_said_too(fresh, monkeypatch):
    def no_home():
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(mkl_on_amd, "cache_dir", no_home)
    assert not mkl_on_amd.enable(**AS_AMD)
    assert mkl_on_amd.status.startswith("could not enable: RuntimeError: Could not determine home directory.")


def test_train_py_logs_what_it_did_and_how_to_turn_it_off(monkeypatch):
    from commands import train

    said = []
    monkeypatch.setattr(train, "rank_zero_info", said.append)
    monkeypatch.setattr(mkl_on_amd, "status", "on: MKL uses its AVX-512/AVX2 kernels on this AMD CPU")
    with pytest.raises(SystemExit):
        train.main(["--model", "no_such_model"])
    assert said == ["mkl_on_amd: on: MKL uses its AVX-512/AVX2 kernels on this AMD CPU (GAN_DYNAMICS_MKL_AMD=0 turns it off)"]
    said.clear()
    monkeypatch.setattr(mkl_on_amd, "status", "could not build the library: no C compiler ...")
    with pytest.raises(SystemExit):
        train.main(["--model", "no_such_model"])
    assert said == ["mkl_on_amd: could not build the library: no C compiler ..."]  # why MKL stays generic
    said.clear()
    monkeypatch.setattr(mkl_on_amd, "status", "not an AMD CPU")
    with pytest.raises(SystemExit):
        train.main(["--model", "no_such_model"])
    assert said == []


# -- in fresh processes: the real library, before torch ----------------------------------------

def python(code: str, tmp_path: Path, **env) -> subprocess.CompletedProcess:
    env = {**os.environ, mkl_on_amd.ENV: "1", "GAN_DYNAMICS_CACHE": str(tmp_path / "cache"), **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


FORCED = """
import mkl_on_amd
print(mkl_on_amd.enable(vendor="AuthenticAMD"), mkl_on_amd.status)
import torch
a = torch.randn(64, 32, dtype=torch.float64)
assert torch.allclose(a @ a.T, (a.unsqueeze(1) * a.unsqueeze(0)).sum(-1))
print("torch ok")
"""


@needs_linux
@needs_compiler
def test_forced_on_any_cpu_the_library_loads_before_torch_and_torch_works(tmp_path):
    done = python(FORCED, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["True on: MKL uses its AVX-512/AVX2 kernels on this AMD CPU", "torch ok"]


@needs_linux
@needs_compiler
def test_a_preloaded_library_is_recognised_and_nothing_is_built(tmp_path):
    lib = mkl_on_amd.build(tmp_path / "prebuilt")
    done = python(FORCED, tmp_path, LD_PRELOAD=str(lib), PATH=str(tmp_path))  # no compiler on PATH either
    assert done.returncode == 0, done.stderr[-2000:]
    first, second = done.stdout.splitlines()
    assert first.startswith("True preloaded: mkl_serv_intel_cpu_true comes from a library in LD_PRELOAD")
    assert second == "torch ok" and not (tmp_path / "cache").exists()


@needs_linux
def test_without_a_compiler_train_py_trains_all_the_same(tmp_path):
    """A (forced) AMD CPU and no compiler: the run goes on, with MKL's generic path, and says nothing."""
    empty = tmp_path / "empty_bin"
    empty.mkdir()
    code = ("import sys, runpy, mkl_on_amd; mkl_on_amd.cpu_vendor = lambda *a: 'AuthenticAMD'; "
            f"sys.argv = ['train.py', *{FAST_RUN(tmp_path)!r}]; runpy.run_path('train.py', run_name='__main__'); "
            "print('status:', mkl_on_amd.status)")
    env = {k: v for k, v in os.environ.items() if k != "CC"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**env, mkl_on_amd.ENV: "1", "PATH": str(empty), "OMP_NUM_THREADS": "1",
                               "GAN_DYNAMICS_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Done: " in done.stdout and "status: could not build the library: no C compiler" in done.stdout
    assert "mkl_on_amd: on" not in done.stdout + done.stderr


def FAST_RUN(tmp_path) -> list[str]:
    return ["--model", "jare", "--trainer.max_steps", "5", "--trainer.enable_progress_bar", "false",
            "--trainer.logger.init_args.save_dir", str(tmp_path), "--model.generator.init_args.width", "8",
            "--model.discriminator.init_args.width", "8", "--trainer.callbacks=[]"]


# -- on a real AMD CPU --------------------------------------------------------------------------

CHECK = """
import mkl_on_amd
assert mkl_on_amd.enable(), mkl_on_amd.status
import numpy as np, torch
rng = np.random.default_rng(0)
worst = 0.0
for m, k, n in [(128, 256, 256), (257, 31, 129), (1, 64, 3), (512, 16, 16)]:
    a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    ref = a @ b  # numpy's own BLAS, float64
    got32 = (torch.from_numpy(a).float() @ torch.from_numpy(b).float()).double().numpy()
    worst = max(worst, np.abs(got32 - ref).max() / np.abs(ref).max())
    got64 = (torch.from_numpy(a) @ torch.from_numpy(b)).numpy()
    assert np.abs(got64 - ref).max() <= 1e-12 * np.abs(ref).max(), (m, k, n)
assert worst < 1e-5, worst
h = rng.standard_normal((60, 60))
ev = np.sort_complex(torch.linalg.eigvals(torch.from_numpy(h)).numpy())
assert np.allclose(ev, np.sort_complex(np.linalg.eigvals(h)), atol=1e-9)
print("ok", mkl_on_amd.status)
"""


@pytest.mark.skipif(not AMD or COMPILER is None, reason="needs an AMD CPU and a C compiler")
def test_products_and_eigenvalues_stay_correct_with_it(tmp_path):
    done = python(CHECK, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok on:")


@pytest.mark.skipif(not AMD or COMPILER is None, reason="needs an AMD CPU and a C compiler")
def test_train_py_turns_it_on_and_says_so(tmp_path):
    env = {**os.environ, mkl_on_amd.ENV: "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(ROOT / "train.py"), *FAST_RUN(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "mkl_on_amd: on" in done.stdout + done.stderr
    off = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300,
                         env={**env, mkl_on_amd.ENV: "0"})
    assert off.returncode == 0 and "mkl_on_amd" not in off.stdout + off.stderr

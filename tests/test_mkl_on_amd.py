"""mkl_on_amd: when it applies, that its library does what it claims, and that MKL's products stay
correct with it (against float64 references computed by numpy's own BLAS)."""
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


def test_vendor_is_read_from_cpuinfo():
    text = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\n"
    assert mkl_on_amd.cpu_vendor(text) == "AuthenticAMD"
    assert mkl_on_amd.cpu_vendor("processor\t: 0\n") == ""


def test_it_applies_only_to_amd_before_torch_unless_turned_off():
    fresh = {"os": os}
    assert mkl_on_amd.reason_not_to({}, fresh, "AuthenticAMD") is None
    assert mkl_on_amd.reason_not_to({mkl_on_amd.ENV: "0"}, fresh, "AuthenticAMD") == "off (GAN_DYNAMICS_MKL_AMD=0)"
    assert "torch was imported" in mkl_on_amd.reason_not_to({}, {"torch": os}, "AuthenticAMD")
    assert mkl_on_amd.reason_not_to({}, fresh, "GenuineIntel") == "not an AMD CPU"
    # here, in pytest, torch is loaded already: enable() refuses and says so
    assert not mkl_on_amd.enable()
    assert mkl_on_amd.status.startswith(("off", "torch was imported"))


@pytest.mark.skipif(COMPILER is None, reason="no C compiler")
def test_the_library_answers_that_the_cpu_is_intel_and_is_built_once(tmp_path):
    lib = mkl_on_amd.build(tmp_path)
    assert ctypes.CDLL(str(lib)).mkl_serv_intel_cpu_true() == 1
    stamp = lib.stat().st_mtime_ns
    assert mkl_on_amd.build(tmp_path) == lib and lib.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [lib.name]  # no temporary files left


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
def test_products_and_eigenvalues_stay_correct_with_it():
    env = {**os.environ, mkl_on_amd.ENV: "1"}
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok on:")


@pytest.mark.skipif(not AMD or COMPILER is None, reason="needs an AMD CPU and a C compiler")
def test_train_py_turns_it_on_and_says_so(tmp_path):
    env = {**os.environ, mkl_on_amd.ENV: "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(ROOT / "train.py"), "--model", "jare", "--trainer.max_steps", "5",
           "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir", str(tmp_path),
           "--model.generator.init_args.width", "8", "--model.discriminator.init_args.width", "8",
           "--trainer.callbacks=[]"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "mkl_on_amd: on" in done.stdout + done.stderr
    off = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300,
                         env={**env, mkl_on_amd.ENV: "0"})
    assert off.returncode == 0 and "mkl_on_amd" not in off.stdout + off.stderr

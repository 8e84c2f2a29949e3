"""Shared fixtures (helpers live in tests/helpers.py)."""
import pytest
import torch


@pytest.fixture
def batch64():
    torch.manual_seed(1)
    return torch.randn(7, 2, dtype=torch.float64), torch.randn(7, 3, dtype=torch.float64)


@pytest.fixture(autouse=True)
def _no_seed_from_an_earlier_test(monkeypatch):
    """``pl.seed_everything`` records its seed in PL_GLOBAL_SEED, which a model takes as the run's
    seed (``TwoPlayerGAN.run_seed``): each test starts without one left by another test."""
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)


@pytest.fixture(autouse=True, scope="session")
def _fixed_threads():
    """train.py chooses its threads by how busy the machine is (runtime.threads); runs that a test
    compares bit for bit must not round differently because another process was busy."""
    import os

    os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))
    yield


@pytest.fixture(autouse=True, scope="session")
def _same_blas_in_subprocesses():
    """The test process imported torch before mkl_on_amd could act; train.py subprocesses would
    otherwise use other MKL kernels and round differently from in-process runs they are compared
    with. tests/test_mkl_on_amd.py turns it on where it tests it."""
    import os

    saved = os.environ.get("GAN_DYNAMICS_MKL_AMD")
    os.environ["GAN_DYNAMICS_MKL_AMD"] = "0"
    yield
    if saved is None:
        os.environ.pop("GAN_DYNAMICS_MKL_AMD", None)
    else:
        os.environ["GAN_DYNAMICS_MKL_AMD"] = saved


@pytest.fixture(autouse=True, scope="session")
def _cache_dir(tmp_path_factory):
    """Trained FID classifiers and real statistics go to a per-session folder, not ~/.cache."""
    import os

    saved = os.environ.get("GAN_DYNAMICS_CACHE")
    os.environ["GAN_DYNAMICS_CACHE"] = str(tmp_path_factory.mktemp("gan_dynamics_cache"))
    yield
    if saved is None:
        os.environ.pop("GAN_DYNAMICS_CACHE", None)
    else:
        os.environ["GAN_DYNAMICS_CACHE"] = saved

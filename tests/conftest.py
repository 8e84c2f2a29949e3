"""Shared fixtures (helpers live in tests/helpers.py)."""
import pytest
import torch


@pytest.fixture
def batch64():
    torch.manual_seed(1)
    return torch.randn(7, 2, dtype=torch.float64), torch.randn(7, 3, dtype=torch.float64)


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

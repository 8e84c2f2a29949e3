"""FID: the Inception loading path offline, exact values against closed forms, the real-statistics
cache, and the same value from 1 and 2 processes."""
from __future__ import annotations

import hashlib
import os
import socket
import urllib.error
from unittest import mock

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import TensorDataset

from callbacks.fid import FID
from gans import Vanilla
from gans.networks import MLPDiscriminator
from metrics.features import INCEPTION_FILE, InceptionFeatures, to_uint8
from runtime.distributed import block

DIM, LATENT = 6, 4


class Features(torch.utils.data.Dataset):
    """A data module's evaluation side holding feature vectors (the extractor is the identity)."""

    def __init__(self, x: torch.Tensor):
        self.x, self.num_workers = x, 0

    def eval_dataset(self):
        return TensorDataset(self.x, torch.zeros(len(self.x), dtype=torch.long))

    def fingerprint(self) -> str:
        return hashlib.sha1(self.x.numpy().tobytes()).hexdigest()[:16]


def affine_model(seed=0) -> Vanilla:
    """G(z) = A z + b: Gaussian 'features' with a known covariance."""
    torch.manual_seed(seed)
    return Vanilla(nn.Linear(LATENT, DIM), MLPDiscriminator(DIM, 8, 1), latent_dim=LATENT).double()


def gaussian_data(n=3000, seed=1) -> Features:
    gen = torch.Generator().manual_seed(seed)
    mix = torch.randn(DIM, DIM, generator=gen, dtype=torch.float64)
    return Features(torch.randn(n, DIM, generator=gen, dtype=torch.float64) @ mix + 0.5)


def frechet(x: np.ndarray, y: np.ndarray) -> float:
    """The closed form ||mu_x - mu_y||^2 + tr(S_x + S_y - 2 (S_x S_y)^(1/2)) of the sample statistics."""
    sx, sy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root = scipy.linalg.sqrtm(sx @ sy).real
    return float(((x.mean(0) - y.mean(0)) ** 2).sum() + np.trace(sx + sy - 2 * root))


def fid(tmp_path, **kw) -> FID:
    defaults = dict(num_samples=1000, batch_size=128, feature_extractor=nn.Flatten(), cache_dir=str(tmp_path),
                    progress=False)
    return FID(**{**defaults, **kw})


def test_blocks_split_contiguously_in_rank_order():
    assert [block(10, r, 3) for r in range(3)] == [slice(0, 3), slice(3, 6), slice(6, 10)]
    assert sum(len(range(10)[block(10, r, 4)]) for r in range(4)) == 10


def test_frechet_distance_matches_the_closed_form_of_two_gaussian_feature_sets(tmp_path):
    model, data = affine_model(), gaussian_data()
    metric = fid(tmp_path, num_real=len(data.x))
    value = metric.score(model, data)["fid"]
    fake = model.generate(metric.latent_bank(model)).numpy()
    expected = frechet(data.x.numpy(), fake)
    assert expected > 1.0                                 # the two sets differ
    assert value == pytest.approx(expected, rel=1e-8)


def test_fid_of_a_sample_set_against_itself_is_zero(tmp_path):
    model = affine_model()
    metric = fid(tmp_path, kid=True, kid_subset_size=200, kid_subsets=10)
    data = Features(model.generate(metric.latent_bank(model)))   # the reference is the generated set
    record = metric.score(model, data)
    assert abs(record["fid"]) < 1e-8
    assert abs(record["kid_mean"]) < 3 * record["kid_std"] / 10 ** 0.5     # unbiased: zero within its error
    other = metric.score(affine_model(seed=3), data)          # and a different generator is far from it
    assert other["fid"] > 1.0 and other["kid_mean"] > 0.1


class Counting(nn.Flatten):
    """The identity extractor, counting the images it sees."""

    seen = 0

    def forward(self, x):
        Counting.seen += len(x)
        return super().forward(x)


def test_real_statistics_are_cached_reused_and_invalidated(tmp_path):
    model, data = affine_model(), gaussian_data()
    first = fid(tmp_path, feature_extractor=Counting())
    value = first.score(model, data)["fid"]
    assert first.real_from_cache is False and len(list(tmp_path.glob("real-*.pt"))) == 1
    Counting.seen = 0
    again = fid(tmp_path, feature_extractor=Counting())
    assert again.score(model, data)["fid"] == value and again.real_from_cache is True
    assert Counting.seen == 1000                                        # only the generated images
    changed = gaussian_data(seed=2)                                     # another data set: recomputed
    third = fid(tmp_path, feature_extractor=Counting())
    assert third.score(model, changed)["fid"] != value and third.real_from_cache is False
    fewer = fid(tmp_path, num_samples=500, feature_extractor=Counting())   # another sample count: recomputed
    fewer.score(model, data)
    assert fewer.real_from_cache is False and len(list(tmp_path.glob("real-*.pt"))) == 3
    other = fid(tmp_path, feature_extractor=nn.Sequential(nn.Flatten()))   # another extractor: recomputed
    other.score(model, data)
    assert other.real_from_cache is False


def test_the_evaluation_leaves_the_training_rng_alone(tmp_path):
    model, data = affine_model(), gaussian_data()
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    fid(tmp_path, kid=True, kid_subset_size=100, kid_subsets=5).score(model, data)
    assert torch.equal(torch.rand(3), expected)


def test_the_metrics_seeding_leaves_every_cuda_generator_alone(tmp_path, monkeypatch):
    """KID's subsets and the trained feature networks are seeded in a block of their own:
    ``torch.manual_seed`` there reseeded every CUDA generator and never restored it, so the
    networks' noise restarted after each evaluation. Now only the CPU generator is seeded (and
    restored); a CUDA reseed would show here as a call."""
    from metrics.features import train_classifier

    model, data, reseeded = affine_model(), gaussian_data(), []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: reseeded.append(seed))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: reseeded.append(seed))
    fid(tmp_path, kid=True, kid_subset_size=100, kid_subsets=5).score(model, data)
    images = TensorDataset(torch.rand(40, 1, 8, 8) * 2 - 1, torch.arange(40) % 2)
    train_classifier(images, 1, 2, steps=2, batch_size=8)
    assert reseeded == []


def test_a_wrong_feature_shape_is_named(tmp_path):
    model, data = affine_model(), gaussian_data(n=50)
    with pytest.raises(ValueError, match=r"must return \(N, d\) features.*got shape \(50, 6, 1\)"):
        fid(tmp_path, feature_extractor=nn.Unflatten(1, (DIM, 1))).score(model, data)
    with pytest.raises(ValueError, match="feature_extractor must be 'inception', 'classifier' or an nn.Module"):
        FID(feature_extractor="vgg")


# -- several processes -------------------------------------------------------------------------

def _worker(rank: int, world: int, port: int, cache: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        record = fid_record(cache)
        if rank == 0:
            torch.save(record, out)
    finally:
        torch.distributed.destroy_process_group()


def fid_record(cache: str) -> dict:
    metric = FID(num_samples=999, batch_size=100, feature_extractor=nn.Flatten(), cache_dir=cache, progress=False,
                 kid=True, kid_subset_size=300, kid_subsets=20)
    return metric.score(affine_model(), gaussian_data(n=1001))


def test_two_processes_give_the_value_of_one(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "two.pt"
    mp.start_processes(_worker, args=(2, port, str(tmp_path / "cache2"), str(out)), nprocs=2, start_method="spawn")
    two, one = torch.load(out), fid_record(str(tmp_path / "cache1"))
    assert two["num_samples"] == one["num_samples"] == 999 and two["num_real"] == one["num_real"] == 999
    assert two["fid"] == pytest.approx(one["fid"], rel=1e-9)
    assert two["kid_mean"] == pytest.approx(one["kid_mean"], rel=1e-5)
    # the cache written by two processes serves one process
    cached = torch.load(next((tmp_path / "cache2").glob("real-*.pt")))
    assert int(cached["n"]) == 999 and cached["features"].shape == (999, DIM)


# -- Inception, offline ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def random_inception_weights(tmp_path_factory):
    """A randomly initialised state dict of the FID Inception architecture, written by the test
    (the real weights cannot be downloaded here)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    with mock.patch.object(FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None), \
            mock.patch("torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url", return_value={}):
        net = FeatureExtractorInceptionV3("random", ["2048"])
    path = tmp_path_factory.mktemp("weights") / "random-inception.pth"
    torch.save(net.state_dict(), path)
    return path


def offline(*args, **kwargs):
    raise urllib.error.URLError("no network in this test")


def test_inception_loads_from_a_local_weights_file_without_network(random_inception_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with mock.patch("torch.hub.download_url_to_file", offline):
        net = InceptionFeatures(random_inception_weights)
        grey = torch.rand(2, 1, 32, 32) * 2 - 1
        features = net(grey)
    assert features.shape == (2, 2048) and torch.isfinite(features).all()
    reference = net.net(to_uint8(grey).expand(-1, 3, -1, -1))        # grey repeated to RGB
    torch.testing.assert_close(features, reference.reshape(2, -1))
    assert net.digest.startswith("inception-tf1-")


def test_inception_from_the_hub_cache_and_a_clear_error_offline(random_inception_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with mock.patch("torch.hub.download_url_to_file", offline):
        with pytest.raises(FileNotFoundError) as err:
            InceptionFeatures()
        message = str(err.value)
        hub = tmp_path / "torch" / "hub" / "checkpoints" / INCEPTION_FILE
        assert INCEPTION_FILE in message and str(hub) in message and "feature_weights_path" in message
        with pytest.raises(FileNotFoundError, match="does not exist"):
            InceptionFeatures(tmp_path / "missing.pth")
        hub.parent.mkdir(parents=True, exist_ok=True)
        hub.write_bytes(random_inception_weights.read_bytes())
        assert InceptionFeatures().weights_path == hub


def test_uint8_conversion_rounds_and_clamps():
    x = torch.tensor([-1.5, -1.0, -0.999, 0.0, 0.999, 1.0, 1.2])
    assert to_uint8(x).tolist() == [0, 0, 0, 128, 255, 255, 255]

"""What FID costs: feature extraction (images/s) for the classifier and Inception extractors, one
evaluation of the FID callback and its share of training time at the digits preset's cadence, and
the Frechet-distance step at d = 2048 (torchmetrics' eigvals against scipy's sqrtm).

    python -m benchmarks.fid_cost                   # the numbers quoted in the README (a few minutes)
    python -m benchmarks.fid_cost --device cuda     # the extraction rates on a GPU
    python -m benchmarks.fid_cost --smoke           # tiny sizes, seconds (CI)

The Inception rows use randomly initialised weights of the right architecture (the cost is the
same as with the real weights, which this machine cannot download). Prints a table and writes
benchmarks/results/fid_cost.json.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytorch_lightning as pl
import scipy.linalg
import torch

from benchmarks.common import quiet, timed, write_results
from benchmarks.step_cost import StepTimer, block_median
from callbacks.fid import FID
from datamodules import Digits
from gans import JARE, Vanilla
from gans.networks import DCGANDiscriminator, DCGANGenerator
from metrics.features import InceptionFeatures, train_classifier
from metrics.fid_score import FIDScore


def random_inception(folder: Path) -> InceptionFeatures:
    """Inception-v3 with random weights, loaded through the normal weights-file path."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    with mock.patch.object(FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None), \
            mock.patch("torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url", return_value={}):
        net = FeatureExtractorInceptionV3("random", ["2048"])
    path = folder / "random-inception.pth"
    torch.save(net.state_dict(), path)
    return InceptionFeatures(path)


def extraction_rows(device: str, n: int, folder: Path, inception: bool) -> list[dict]:
    data = Digits(channels=1)
    images = torch.stack([data.dataset[i][0] for i in range(n)]).to(device)
    classifier, accuracy = train_classifier(data.dataset, 1, 10, steps=20 if n < 100 else 600)
    extractors = {f"classifier features (held-out accuracy {accuracy:.2f})": classifier.to(device)}
    if inception:
        extractors["Inception-v3 pool features (32x32 -> 299)"] = random_inception(folder).to(device)
    rows = []
    for name, net in extractors.items():
        with torch.no_grad():
            net(images[:2])  # warm-up
            seconds = timed(lambda: [net(chunk) for chunk in images.split(100)], repeats=3)
        rows.append({"case": f"{name}, {device}", "images": n, "seconds": seconds, "images_per_s": n / seconds})
    return rows


def reference_rows(folder: Path) -> list[dict]:
    """The digits preset's Frechet distance between two random halves of the real data: the floor
    a perfect generator would reach at that sample size."""
    from torchmetrics.image.fid import _compute_fid

    data = Digits()
    net = FIDScore(feature_extractor="classifier", cache_dir=str(folder)).build_extractor(data)
    with torch.no_grad():
        feats = torch.cat([net(torch.stack([data.dataset[i][0] for i in range(k, min(k + 500, len(data.dataset)))]))
                           for k in range(0, len(data.dataset), 500)]).double()
    halves = feats[torch.randperm(len(feats), generator=torch.Generator().manual_seed(0))].chunk(2)
    stats = [(h.mean(0), torch.cov(h.T)) for h in halves]
    value = float(_compute_fid(stats[0][0], stats[0][1], stats[1][0], stats[1][1]))
    return [{"case": "digits, real vs real (two random halves), classifier features", "seconds": 0.0, "value": value}]


def dcgan(cls, width: int):
    torch.manual_seed(0)
    return cls(DCGANGenerator(64, 1, 32, width), DCGANDiscriminator(1, 32, width), latent_dim=64, loss="ns",
               optimizer=lambda p: torch.optim.Adam(p, lr=2e-4, betas=(0.5, 0.999)))


def callback_rows(num_samples: int, every: int, iterations: int, width: int, folder: Path) -> list[dict]:
    """One evaluation of the callback (classifier features, real statistics cached) against the
    training time per iteration of the digits preset's networks."""
    data = Digits(batch_size=64)
    rows = []
    for cls in (Vanilla, JARE):
        model = dcgan(cls, width)
        fid = FID(num_samples=num_samples, feature_extractor="classifier", cache_dir=str(folder), progress=False)
        fid.score(model, data)  # trains the classifier, caches the real statistics
        per_eval = timed(lambda: fid.score(model, data), repeats=3)
        pl.Trainer(max_steps=iterations + 1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, accelerator="cpu", callbacks=[StepTimer()]).fit(model, datamodule=data)
        per_it = block_median(StepTimer.stamps, 0, 1, iterations)
        rows.append({"case": f"FID callback, {num_samples} samples, {cls.__name__} DCGAN width {width}",
                     "seconds": per_eval, "train_s_per_iteration": per_it, "every": every,
                     "share": per_eval / (every * per_it + per_eval)})
    return rows


def frechet_rows(dim: int, n: int) -> list[dict]:
    """tr sqrt(S1 S2) two ways on the same covariances (post-ReLU features with a decaying spectrum)."""
    from torchmetrics.image.fid import _compute_fid

    rng = np.random.default_rng(0)
    mix = rng.standard_normal((dim, dim)) * (np.arange(1, dim + 1) ** -0.75)[None, :] * 0.3
    stats = []
    for _ in range(2):
        feats = np.maximum(rng.standard_normal((n, dim)) @ mix.T + 0.3, 0)
        stats.append((feats.mean(0), np.cov(feats, rowvar=False)))
    (m1, s1), (m2, s2) = stats

    def scipy_fid():
        root = scipy.linalg.sqrtm(s1 @ s2).real
        return float(((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * root))

    t = [torch.from_numpy(a) for a in (m1, s1, m2, s2)]
    value_tm, value_sp = float(_compute_fid(*t)), scipy_fid()
    return [{"case": f"Frechet distance d={dim}: torchmetrics (eigvals, float64)", "seconds":
             timed(lambda: _compute_fid(*t), repeats=3), "value": value_tm},
            {"case": f"Frechet distance d={dim}: scipy.linalg.sqrtm (float64)", "seconds": timed(scipy_fid, repeats=3),
             "value": value_sp}]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--device", default="cpu", help="where the extractors run (cpu, cuda)")
    args = parser.parse_args(argv)
    quiet()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.smoke:
            rows = (extraction_rows(args.device, 20, folder, inception=False) + callback_rows(100, 500, 3, 4, folder)
                    + reference_rows(folder) + frechet_rows(64, 200))
        else:
            rows = (extraction_rows(args.device, 500, folder, inception=True)
                    + callback_rows(1797, 500, 30, 32, folder) + reference_rows(folder) + frechet_rows(2048, 5000))
    print(f"{'case':75s} {'seconds':>9s}  notes")
    for r in rows:
        notes = (f"{r['images_per_s']:.0f} images/s" if "images_per_s" in r else
                 f"{100 * r['share']:.1f}% of training every {r['every']} its "
                 f"({1000 * r['train_s_per_iteration']:.0f} ms/it)" if "share" in r else f"value {r['value']:.6f}")
        print(f"{r['case']:75s} {r['seconds']:9.3f}  {notes}")
    write_results("fid_cost" if args.device == "cpu" else f"fid_cost_{args.device.split(':')[0]}", rows, args.smoke,
                  device=args.device)
    return rows


if __name__ == "__main__":
    main()

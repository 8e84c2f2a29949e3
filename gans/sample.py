"""Draw samples from a saved checkpoint.

    python -m gans.sample runs/jare/version_0/checkpoints/last.ckpt --num 2500 --out samples

writes ``samples.pt`` (the tensor) and, for 2-D data, ``samples.png`` (a scatter plot over the
training data's modes, with the coverage metrics when the checkpoint's data module is a mixture).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from gans.base import TwoPlayerGAN


def load_model(checkpoint: str | Path) -> TwoPlayerGAN:
    """The model of a ``train.py`` checkpoint, networks included (their class paths are saved with it)."""
    return TwoPlayerGAN.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=False).eval()


def _mixture_of(checkpoint: Path):
    hparams = torch.load(checkpoint, map_location="cpu", weights_only=False).get("datamodule_hyper_parameters", {})
    if hparams.get("_class_path") != "datamodules.MixtureOfGaussians":
        return None
    from datamodules import MixtureOfGaussians

    return MixtureOfGaussians(**{k: v for k, v in hparams.items() if not k.startswith("_")})


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m gans.sample", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--num", type=int, default=2500, help="number of samples")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latent codes")
    parser.add_argument("--out", type=Path, default=Path("samples"), help="output path without extension")
    args = parser.parse_args(argv)
    if not args.checkpoint.is_file():
        parser.error(f"no checkpoint at {args.checkpoint}")
    model = load_model(args.checkpoint)
    samples = model.sample(args.num, torch.Generator().manual_seed(args.seed))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(samples, args.out.with_suffix(".pt"))
    print(f"{args.num} samples of shape {tuple(samples.shape[1:])} -> {args.out.with_suffix('.pt')}")
    if samples.ndim == 2 and samples.shape[1] == 2:
        from callbacks.mixture_metrics import mixture_metrics, scatter_figure

        data = _mixture_of(args.checkpoint)
        modes, std, title = (data.modes, data.std, "") if data is not None else (torch.zeros(0, 2), 0.0, "")
        if data is not None:
            stats = mixture_metrics(samples, modes, std)
            title = f"{stats['modes_covered']}/{len(modes)} modes, {stats['high_quality']:.1f}% high quality"
            print(title)
        scatter_figure(samples, modes, std, 3.0, f"{args.checkpoint.name}: {title}").savefig(args.out.with_suffix(".png"))
        print(f"scatter plot -> {args.out.with_suffix('.png')}")
    return args.out


if __name__ == "__main__":
    main()

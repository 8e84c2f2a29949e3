"""Draw samples from a saved checkpoint.

    python -m commands.sample runs/jare/version_0/checkpoints/last.ckpt --num 2500

writes ``samples/last_step<N>.pt`` (the tensor) and ``.png`` in the checkpoint's run folder (or
``--out PATH``): for images a grid, for 2-D data a scatter plot over the training data's modes
(with the coverage metrics when the checkpoint's data module is a mixture). Models with a
generator EMA sample from it. An existing output of that name is kept and the new one gets
``_2``, ``_3``, ...; ``--device`` picks where the generator runs (a GPU when there is one).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torchvision.utils import save_image

from commands.outputs import device_option, output_stem, unused, writable_folder
from datamodules.contracts import MixtureData
from figures import image_grid, scatter_figure
from gans.checkpoint import load_datamodule, load_model
from metrics.mixture import mixture_metrics
from runtime.checkpoint import CheckpointError, read_checkpoint


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m commands.sample", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--num", type=int, default=2500, help="number of samples")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latent codes")
    parser.add_argument("--out", type=Path, default=None,
                        help="output path without extension (default: <run folder>/samples/<checkpoint>_step<N>, "
                             "beside the checkpoint's checkpoints/ folder)")
    parser.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda or cuda:N")
    args = parser.parse_args(argv)
    if args.num < 1:
        parser.error(f"--num must be a positive number of samples, got {args.num}")
    try:
        checkpoint = read_checkpoint(args.checkpoint)
        device = device_option(args.device)
        default = args.checkpoint.resolve().parent.parent / "samples" / output_stem(args.checkpoint,
                                                                                    checkpoint.get("global_step", 0))
        out = args.out or default
        writable_folder(out.parent, "--out")
        model = load_model(args.checkpoint).to(device)
    except (CheckpointError, ValueError) as err:
        parser.error(str(err))
    args.out = unused(out, (".pt", ".png"))
    pt, png = (args.out.with_name(args.out.name + suffix) for suffix in (".pt", ".png"))
    samples = model.sample(args.num, torch.Generator().manual_seed(args.seed)).cpu()
    torch.save(samples, pt)
    print(f"{args.num} samples of shape {tuple(samples.shape[1:])} -> {pt}")
    if samples.ndim == 4:
        save_image(image_grid(samples, nrow=max(1, round(args.num ** 0.5))), png)
        print(f"image grid -> {png}")
    elif samples.ndim == 2 and samples.shape[1] == 2:
        data = load_datamodule(args.checkpoint)
        has_modes = isinstance(data, MixtureData)
        modes, std, title = (data.modes, data.std, "") if has_modes else (torch.zeros(0, 2), 0.0, "")
        if has_modes:
            stats = mixture_metrics(samples, modes, std)
            title = f"{stats['modes_covered']}/{len(modes)} modes, {stats['high_quality']:.1f}% high quality"
            print(title)
        scatter_figure(samples, modes, std, 3.0, f"{args.checkpoint.name}: {title}").savefig(png)
        print(f"scatter plot -> {png}")
    return args.out


if __name__ == "__main__":
    main()

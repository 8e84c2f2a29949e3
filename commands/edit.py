"""Edit one factor of a real image with a trained Semi-StyleGAN.

    python -m commands.edit runs/semistylegan_fine/version_0/checkpoints/last.ckpt image.png --factor 0 --value 0.8

The encoder reads the image's codes c = E(x); code ``factor`` is set to ``value``; the generator
draws G(c', z) (the EMA generator when the model has one). With a Semi-StyleGAN-fine checkpoint
the generator also takes the image itself, downsampled, so the result keeps the image's coarse
content and changes the fine factor: a real edit. With a plain Semi-StyleGAN the result is a new
image with the image's codes, one changed (there is no inversion of z). Writes the edited image
(``--out``) and a strip [input | codes unchanged | edited] beside it (``<out>_strip.png``), and
prints the codes read back from both.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torchvision.utils import save_image

from commands.outputs import unused, writable_folder
from datamodules.images import FileImages
from figures import image_grid
from gans.checkpoint import load_model
from gans.semistylegan import SemiStyleGAN
from runtime.checkpoint import CheckpointError


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m commands.edit", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a Semi-StyleGAN checkpoint written by train.py")
    parser.add_argument("image", type=Path, help="the image to edit (any size; resized to the model's)")
    parser.add_argument("--factor", type=int, required=True, help="index of the code to change")
    parser.add_argument("--value", type=float, required=True, help="its new value, in [0, 1]")
    parser.add_argument("--seed", type=int, default=0, help="seed of z")
    parser.add_argument("--out", type=Path, default=None, help="output image (default: <image>_edited.png)")
    args = parser.parse_args(argv)
    for path, what in ((args.checkpoint, "checkpoint"), (args.image, "image")):
        if not path.is_file():
            parser.error(f"no {what} at {path}")
    if not 0 <= args.value <= 1:
        parser.error(f"--value must be in [0, 1] (codes are normalised factor values), got {args.value}")
    out = args.out or args.image.with_name(f"{args.image.stem}_edited.png")
    try:
        writable_folder(out.parent, "--out")
        model = load_model(args.checkpoint)
    except (CheckpointError, ValueError) as err:
        parser.error(str(err))
    if not isinstance(model, SemiStyleGAN):
        parser.error(f"{args.checkpoint} holds a {type(model).__name__}, not a SemiStyleGAN")
    channels, resolution = model.generator.channels, model.generator.resolution
    image = FileImages([args.image], [0], resolution, channels)[0][0][None]
    try:
        codes, same, edited = model.edit(image, args.factor, args.value, args.seed)
    except ValueError as err:
        parser.error(str(err))
    stem = unused(out.with_suffix(""), (".png", "_strip.png"))
    out = stem.with_name(stem.name + ".png")
    save_image(image_grid(edited, nrow=1), out)
    strip = out.with_name(f"{out.stem}_strip.png")
    save_image(image_grid(torch.cat([image, same, edited]), nrow=3), strip)
    fmt = lambda c: "[" + ", ".join(f"{v:.2f}" for v in c.tolist()) + "]"  # noqa: E731
    print(f"codes read from the image: {fmt(codes)}")
    print(f"codes read from the edit:  {fmt(model.encode(edited)[0].cpu())}")
    if not model.condition_dim:
        print("note: a plain Semi-StyleGAN regenerates from the codes (z is not inverted); "
              "Semi-StyleGAN-fine keeps the image's coarse content")
    print(f"edited image -> {out}; [input | unchanged codes | edited] -> {strip}")
    return out


if __name__ == "__main__":
    main()

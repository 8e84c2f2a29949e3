"""FID (and KID) of a saved checkpoint's generator against its data.

    python -m commands.fid runs/jare_cifar10/version_0/checkpoints/last.ckpt --num-samples 10000

prints the record as JSON (the fields of ``fid.jsonl``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from callbacks.progress import progress
from commands.outputs import device_option
from datamodules.contracts import ImageData
from gans.checkpoint import load_datamodule, load_model
from metrics.fid_score import FIDScore
from runtime.checkpoint import CheckpointError


def main(argv: list[str] | None = None) -> dict:
    """FID of a saved checkpoint's generator (the EMA one when it has one) against its data."""
    parser = argparse.ArgumentParser(prog="python -m commands.fid", description=main.__doc__)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--num-samples", type=int, default=10000)
    parser.add_argument("--features", default="inception", help="inception or classifier")
    parser.add_argument("--weights", default=None, help="the Inception weights file (offline machines)")
    parser.add_argument("--kid", action="store_true", help="also the kernel inception distance")
    parser.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda or cuda:N")
    args = parser.parse_args(argv)
    try:
        device = device_option(args.device)
        model, data = load_model(args.checkpoint).to(device), load_datamodule(args.checkpoint)
    except (CheckpointError, ValueError) as err:
        parser.error(str(err))
    if not isinstance(data, ImageData):
        parser.error(f"the checkpoint's datamodule ({type(data).__name__}) is not image data (no eval_dataset())")
    scorer = FIDScore(num_samples=args.num_samples, feature_extractor=args.features, feature_weights_path=args.weights,
                      kid=args.kid)
    record = scorer.score(model, data, lambda what, total: progress(None, what, total, "images"))
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()

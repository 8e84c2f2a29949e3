"""One member of a sweep's checkpoint as an ordinary checkpoint, the one its single run writes.

    python -m commands.member runs/jare_sweep/version_0/checkpoints/last.ckpt 3
    python -m commands.sample runs/jare_sweep/version_0/members/member3_last_step10000.ckpt

writes ``members/member<M>_<checkpoint>_step<N>.ckpt`` in the sweep's run folder (or ``--out``):
member M's weights, hyperparameters, method and optimizer state, which ``commands.sample``,
``commands.spectrum``, ``commands.fid`` and ``gans.checkpoint.load_model`` read as any other.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from commands.outputs import output_stem, unused, writable_folder
from gans.sweep import member_checkpoint
from runtime.checkpoint import CheckpointError, read_checkpoint


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m commands.member", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a checkpoint of a sweep (train.py --sweep.*)")
    parser.add_argument("member", type=int, help="the member's index (the member column of sweep.csv)")
    parser.add_argument("--out", type=Path, default=None, help="where to write the member's checkpoint")
    args = parser.parse_args(argv)
    try:
        checkpoint = read_checkpoint(args.checkpoint)
        member = member_checkpoint(checkpoint, args.member)
        stem = output_stem(args.checkpoint, checkpoint.get("global_step", 0))
        out = args.out or (args.checkpoint.resolve().parent.parent / "members" / f"member{args.member}_{stem}.ckpt")
        writable_folder(out.parent, "--out")
    except (CheckpointError, ValueError) as err:
        parser.error(str(err))
    if args.out is None:
        out = unused(out.with_suffix(""), (".ckpt",)).with_suffix(".ckpt")
    torch.save(member, out)
    settings = ", ".join(f"{k}={v:g}" for k, v in member["sweep_member"]["settings"].items())
    print(f"member {args.member} (seed {member['sweep_member']['seed']}{', ' + settings if settings else ''}) -> {out}")
    return out


if __name__ == "__main__":
    main()

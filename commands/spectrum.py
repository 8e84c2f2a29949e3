"""The Jacobian spectrum of a saved checkpoint, written as the ``JacobianSpectrum`` callback writes it.

    python -m commands.spectrum runs/jare/version_0/checkpoints/last.ckpt --k 20
    python -m commands.spectrum runs/jare/version_0/checkpoints/last.ckpt --k 20 --preconditioned --dtype float64

writes ``spectra/<checkpoint>_step<N>.npz`` (eigenvalues and their summary scalars per field) and
``.png`` in the checkpoint's run folder (or ``--out``). Real data come from the checkpoint's
datamodule (every datamodule with ``eval_samples``: mixtures, images, factor data).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from callbacks.figures import eigenvalue_figure
from callbacks.jacobian_spectrum import DTYPES
from callbacks.progress import progress
from datamodules.contracts import RealSamples
from gans.checkpoint import CheckpointError, load_datamodule, load_model, read_checkpoint
from gans.optim import preconditioner
from gans.spectrum import MAX_FULL_PARAMS, compute_spectrum


def main(argv: list[str] | None = None) -> Path:
    """Spectrum of a saved checkpoint, written as by the ``JacobianSpectrum`` callback."""
    parser = argparse.ArgumentParser(prog="python -m commands.spectrum", description=main.__doc__)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--k", type=int, default=None, help="top-k eigenvalues (default: full spectrum when cheap, else 20)")
    parser.add_argument("--field", choices=["update", "gradient", "both"], default="both")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--num-batches", type=int, default=1)
    parser.add_argument("--seed", type=int, default=4321, help="seed of the latent codes")
    parser.add_argument("--k-smallest", type=int, default=1, help="eigenvalues of smallest real part besides (top-k)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="precision of the Jacobian products")
    parser.add_argument("--tol", type=float, default=1e-4, help="the eigenvalue search's relative tolerance (top-k)")
    parser.add_argument("--max-products", type=int, default=None, help="budget of Jacobian products per field (top-k)")
    parser.add_argument("--preconditioned", action="store_true",
                        help="the spectrum of P^-1 J with P from the checkpoint's optimizer state (RMSProp, Adam, ...)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: next to the checkpoint's run)")
    args = parser.parse_args(argv)
    try:
        checkpoint = read_checkpoint(args.checkpoint)
        model, data = load_model(args.checkpoint), load_datamodule(args.checkpoint)
    except CheckpointError as err:
        parser.error(str(err))
    if not isinstance(data, RealSamples):
        parser.error(f"the checkpoint's datamodule ({type(data).__name__}) gives no real data: it has no "
                     f"eval_samples(n) (the mixtures and every image and factor datamodule of the project have it)")
    n = args.batch_size * args.num_batches
    reals = list(data.eval_samples(n).split(args.batch_size))
    zs = list(model.sample_latent(n, torch.Generator().manual_seed(args.seed)).split(args.batch_size))
    n_params = sum(p.numel() for p in model.params_g + model.params_d)
    k = args.k if args.k is not None else (None if n_params <= MAX_FULL_PARAMS else 20)
    fields = ["update", "gradient"] if args.field == "both" else [args.field]
    try:
        scale = saved_preconditioner(model, checkpoint) if args.preconditioned else None
    except (TypeError, ValueError) as err:
        parser.error(str(err))
    results = {}
    for name in fields:
        total = n_params if k is None else (args.max_products or 1000)  # no budget: the bar is a guide
        with progress(None, f"spectrum of the {name} field", total, "products") as advance:
            results[name] = compute_spectrum(model, reals, zs, field=name, k=k, k_smallest=args.k_smallest,
                                             dtype=DTYPES[args.dtype], tol=args.tol, max_products=args.max_products,
                                             preconditioner=scale, on_product=advance)
        print(f"{name:8s} {results[name].mode:4s} " + "  ".join(f"{key} {value:.4g}" for key, value in
                                                           results[name].scalars().items()))
    step = checkpoint.get("global_step", 0)
    out = args.out or args.checkpoint.resolve().parent.parent / "spectra"
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{args.checkpoint.stem}_step{step}"
    np.savez(out / f"{stem}.npz", preconditioned=args.preconditioned,
             **{f"{name}_eigenvalues": r.eigenvalues for name, r in results.items()},
             **{f"{name}_{key}": np.float64(v) for name, r in results.items() for key, v in r.scalars().items()})
    eigenvalue_figure(results, f"{args.checkpoint.name}, iteration {step}").savefig(out / f"{stem}.png")
    print(f"eigenvalues -> {out / (stem + '.npz')}, plot -> {out / (stem + '.png')}")
    return out / f"{stem}.npz"


def saved_preconditioner(model, checkpoint: dict):
    """``gans.optim.preconditioner`` of the optimizer state saved in ``checkpoint``."""
    if not checkpoint.get("optimizer_states"):
        raise ValueError("the checkpoint holds no optimizer state (saved with save_weights_only?): "
                         "the preconditioned spectrum needs the optimizer's second-moment estimates")
    optimizer = model.configure_optimizers()
    optimizer.load_state_dict(checkpoint["optimizer_states"][0])
    return preconditioner(optimizer)


if __name__ == "__main__":
    main()

"""The Jacobian spectrum of a saved checkpoint, written as the ``JacobianSpectrum`` callback writes it.

    python -m commands.spectrum runs/jare/version_0/checkpoints/last.ckpt
    python -m commands.spectrum runs/jare/version_0/checkpoints/last.ckpt --k 20 --preconditioned --dtype float64

evaluates the spectrum with the settings of the run's own ``callbacks.JacobianSpectrum`` (from the
run's ``config.yaml``: field, k, batches, seed, precision, tolerance, budget; the callback's
defaults for a run without one), so that it equals the spectrum the run computed during training
at that iteration; each option below overrides one setting. Writes
``spectra/<checkpoint>_step<N>[_preconditioned].npz`` (eigenvalues, their summary scalars per
field and the settings) and ``.png`` in the checkpoint's run folder (or ``--out DIR``); an existing
file of that name is kept and the new one gets ``_2``, ``_3``, ... Real data come from the
checkpoint's datamodule (every datamodule with ``eval_samples``: mixtures, images, factor data).
"""
from __future__ import annotations

import argparse
from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np
import yaml

from callbacks.progress import progress
from commands.outputs import device_option, output_stem, unused, writable_folder
from datamodules.contracts import RealSamples
from figures import eigenvalue_figure
from gans.checkpoint import load_datamodule, load_model
from runtime.checkpoint import CheckpointError, read_checkpoint
from runtime.optim import preconditioner
from spectra.spectrum import DTYPES, SpectrumSettings, evaluate_spectra

#: the settings a command-line option overrides: (option, SpectrumSettings field)
OVERRIDES = {"field": "field", "k": "k", "k_smallest": "k_smallest", "batch_size": "batch_size",
             "num_batches": "num_batches", "seed": "seed", "dtype": "dtype", "tol": "tol",
             "max_products": "max_products"}


def run_settings(checkpoint: Path) -> tuple[SpectrumSettings, str]:
    """The spectrum settings of the run a checkpoint belongs to (its ``config.yaml``'s
    ``JacobianSpectrum``), and where they came from."""
    config = checkpoint.resolve().parent.parent / "config.yaml"
    try:
        callbacks = (yaml.safe_load(config.read_text()) or {}).get("trainer", {}).get("callbacks") or []
    except (OSError, yaml.YAMLError):
        callbacks = []
    for callback in callbacks:
        if isinstance(callback, dict) and str(callback.get("class_path", "")).endswith("JacobianSpectrum"):
            names = {f.name for f in fields(SpectrumSettings)}
            init = {k: v for k, v in (callback.get("init_args") or {}).items() if k in names}
            return SpectrumSettings(**init), f"the run's callbacks.JacobianSpectrum ({config})"
    return SpectrumSettings(), "callbacks.JacobianSpectrum's defaults (the run has none)"


def main(argv: list[str] | None = None) -> Path:
    """Spectrum of a saved checkpoint, written as by the ``JacobianSpectrum`` callback."""
    parser = argparse.ArgumentParser(prog="python -m commands.spectrum", description=main.__doc__)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--k", type=int, default=None, help="top-k eigenvalues (default: the run's; 0: automatic, "
                                                            "the full spectrum when cheap, else 20)")
    parser.add_argument("--field", choices=["update", "gradient", "both"], default=None)
    parser.add_argument("--batch-size", dest="batch_size", type=int, default=None)
    parser.add_argument("--num-batches", dest="num_batches", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None, help="seed of the latent codes")
    parser.add_argument("--k-smallest", dest="k_smallest", type=int, default=None,
                        help="eigenvalues of smallest real part besides (top-k)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="precision of the Jacobian products")
    parser.add_argument("--tol", type=float, default=None, help="the eigenvalue search's relative tolerance (top-k)")
    parser.add_argument("--max-products", dest="max_products", type=int, default=None,
                        help="budget of Jacobian products per field (top-k; 0: no limit)")
    parser.add_argument("--preconditioned", action="store_true",
                        help="the spectrum of P^-1 J with P from the checkpoint's optimizer state (RMSProp, Adam, ...)")
    parser.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda or cuda:N")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: the checkpoint's run folder's "
                                                               "spectra/)")
    args = parser.parse_args(argv)
    try:
        checkpoint = read_checkpoint(args.checkpoint)
        device = device_option(args.device)
        out = writable_folder(args.out or args.checkpoint.resolve().parent.parent / "spectra")
        settings, source = run_settings(args.checkpoint)
        given = {name: getattr(args, option) for option, name in OVERRIDES.items() if getattr(args, option) is not None}
        given.update({name: None for name in ("k", "max_products") if given.get(name) == 0})
        settings = replace(settings, **given)
        model, data = load_model(args.checkpoint).to(device), load_datamodule(args.checkpoint)
    except (CheckpointError, ValueError) as err:
        parser.error(str(err))
    if not isinstance(data, RealSamples):
        parser.error(f"the checkpoint's datamodule ({type(data).__name__}) gives no real data: it has no "
                     f"eval_samples(n) (the mixtures and every image and factor datamodule of the project have it)")
    try:
        scale = saved_preconditioner(model, checkpoint) if args.preconditioned else None
    except (TypeError, ValueError) as err:
        parser.error(str(err))
    print(f"settings: {source}" + (f", with {', '.join(f'{k}={v}' for k, v in given.items())}" if given else ""))
    evaluated = evaluate_spectra(model, data.eval_samples(settings.batch_size * settings.num_batches), settings,
                                 preconditioner=scale, progress=lambda what, total: progress(None, what, total, "products"))
    results = {name: result for name, (result, _) in evaluated.items()}
    for name, result in results.items():
        print(f"{name:8s} {result.mode:4s} " + "  ".join(f"{key} {value:.4g}" for key, value in result.scalars().items()))
    step = checkpoint.get("global_step", 0)
    stem = unused(out / output_stem(args.checkpoint, step, *(["preconditioned"] if args.preconditioned else [])),
                  (".npz", ".png"))
    np.savez(stem.with_name(stem.name + ".npz"), preconditioned=args.preconditioned,
             **{f"setting_{k}": np.asarray("none" if v is None else v) for k, v in asdict(settings).items()},
             **{f"{name}_eigenvalues": r.eigenvalues for name, r in results.items()},
             **{f"{name}_{key}": np.float64(v) for name, r in results.items() for key, v in r.scalars().items()})
    title = f"{args.checkpoint.name}, iteration {step}" + (" (preconditioned: P^-1 J)" if args.preconditioned else "")
    eigenvalue_figure(results, title).savefig(stem.with_name(stem.name + ".png"))
    print(f"eigenvalues -> {stem}.npz, plot -> {stem}.png")
    return stem.with_name(stem.name + ".npz")


def saved_preconditioner(model, checkpoint: dict):
    """``runtime.optim.preconditioner`` of the optimizer state saved in ``checkpoint``."""
    if not checkpoint.get("optimizer_states"):
        raise ValueError("the checkpoint holds no optimizer state (saved with save_weights_only?): "
                         "the preconditioned spectrum needs the optimizer's second-moment estimates")
    optimizer = model.configure_optimizers()
    optimizer.load_state_dict(checkpoint["optimizer_states"][0])
    return preconditioner(optimizer)


if __name__ == "__main__":
    main()

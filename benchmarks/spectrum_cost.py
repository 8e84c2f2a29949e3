"""What a Jacobian spectrum costs: full spectrum against parameter count, top-k on the ring networks,
and the JacobianSpectrum callback's overhead as a share of training time.

    python -m benchmarks.spectrum_cost            # the numbers quoted in the README (a few minutes)
    python -m benchmarks.spectrum_cost --smoke    # tiny sizes, seconds (CI)

Prints a table and writes benchmarks/results/spectrum_cost.json.
"""
from __future__ import annotations

import argparse

import torch

from benchmarks.common import quiet, timed, write_results
from datamodules import MixtureOfGaussians
from gans import JARE
from gans.networks import MLPDiscriminator, MLPGenerator
from gans.spectrum import compute_spectrum


def jare_gan(width: int, depth: int, latent_dim: int = 64) -> JARE:
    torch.manual_seed(0)
    return JARE(MLPGenerator(latent_dim, 2, width, depth), MLPDiscriminator(2, width, depth), latent_dim=latent_dim,
                loss="zero_sum", latent_std=2.0, gamma=100.0)


def eval_batch(model, n: int):
    data = MixtureOfGaussians(kind="ring", radius=2.0, std=0.06)
    return data.eval_samples(n), model.sample_latent(n, torch.Generator().manual_seed(0))


def full_spectrum_rows(widths: list[int], latent_dim: int) -> list[dict]:
    rows = []
    for width in widths:
        model = jare_gan(width, 2, latent_dim)
        real, z = eval_batch(model, 128)
        n = sum(p.numel() for p in model.parameters())
        seconds = timed(lambda: compute_spectrum(model, real, z, field="gradient", max_full_params=10**6), repeats=3)
        rows.append({"case": f"full spectrum, 2 x {width} MLPs", "params": n, "seconds": seconds})
    return rows


def topk_rows(width: int, depth: int, k: int, batch: int) -> list[dict]:
    model = jare_gan(width, depth)
    real, z = eval_batch(model, batch)
    n = sum(p.numel() for p in model.parameters())
    return [{"case": f"top-{k}, {field} field, {depth} x {width} MLPs, batch {batch}", "params": n,
             "seconds": timed(lambda: compute_spectrum(model, real, z, field=field, k=k))}
            for field in ("gradient", "update")]


def overhead_rows(width: int, iterations: int, every: int, k: int, batch: int) -> list[dict]:
    """Training time per iteration against the spectrum's time per evaluation, at a cadence."""
    model = jare_gan(width, 4)
    data = MixtureOfGaussians(kind="ring", radius=2.0, std=0.06, batch_size=128)
    model.configure_optimizers = lambda: torch.optim.RMSprop(model.parameters(), lr=1e-4)  # noqa: E731
    import pytorch_lightning as pl

    trainer = pl.Trainer(max_steps=iterations, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")
    train_s = timed(lambda: trainer.fit(model, datamodule=data)) / iterations
    real, z = eval_batch(model, batch)
    spec_s = timed(lambda: compute_spectrum(model, real, z, field="update", k=k))
    return [{"case": f"callback every {every} its, top-{k} update field, batch {batch}, 4 x {width}",
             "params": sum(p.numel() for p in model.parameters()), "seconds": spec_s,
             "train_s_per_iteration": train_s, "overhead": spec_s / (every * train_s)}]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    args = parser.parse_args(argv)
    quiet()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    if args.smoke:
        rows = full_spectrum_rows([4, 8], latent_dim=4) + topk_rows(8, 2, 4, 32) + overhead_rows(8, 20, 10, 4, 32)
    else:
        rows = (full_spectrum_rows([8, 16, 24, 32], latent_dim=16) + topk_rows(256, 4, 20, 128)
                + topk_rows(128, 4, 6, 64) + overhead_rows(128, 300, 5000, 6, 64) + overhead_rows(128, 300, 1000, 6, 64))
    print(f"{'case':70s} {'params':>8s} {'seconds':>9s} {'overhead':>9s}")
    for r in rows:
        extra = f"{100 * r['overhead']:8.1f}%" if "overhead" in r else ""
        print(f"{r['case']:70s} {r['params']:8d} {r['seconds']:9.2f} {extra:>9s}")
    write_results("spectrum_cost", rows, args.smoke)
    return rows


if __name__ == "__main__":
    main()

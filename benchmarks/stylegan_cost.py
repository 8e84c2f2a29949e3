"""Images per second of the Semi-StyleGAN networks: generator and discriminator forward passes
(no gradients) and a whole alternating training iteration (a D step with R1, a G step with the
smoothness term), at StyleGAN2's widths and at the CPU-sized default.

    python -m benchmarks.stylegan_cost                      # CPU: 64 and 256 (StyleGAN2 widths), 32 (default)
    python -m benchmarks.stylegan_cost --device cuda --cases 256 1024
"""
from __future__ import annotations

import argparse
import time

import torch

from benchmarks.common import write_results
from gans import SemiStyleGAN
from gans.networks import StyleGANDiscriminator, StyleGANGenerator
from gans.semistylegan import FactorBatch

#: name -> (resolution, channel_base, channel_max, w_dim, mapping depth): StyleGAN2-ADA's "paper256"
#: widths below 1024 and its 1024 widths at 1024; "default" is configs/models/semistylegan.yaml
CASES = {"default32": (32, 512, 32, 64, 3), "64": (64, 16384, 512, 512, 3), "256": (256, 16384, 512, 512, 3),
         "1024": (1024, 32768, 512, 512, 3), "smoke": (16, 64, 8, 16, 1)}


def build(case: str, device: str) -> SemiStyleGAN:
    res, base, cmax, w_dim, depth = CASES[case]
    torch.manual_seed(0)
    g = StyleGANGenerator(5, 32, resolution=res, channels=3, channel_base=base, channel_max=cmax, w_dim=w_dim,
                          mapping_depth=depth)
    d = StyleGANDiscriminator(5, resolution=res, channels=3, channel_base=base, channel_max=cmax)
    return SemiStyleGAN(g, d, factor_sizes=[3, 6, 40, 32, 32], penalty_every=1).to(device)


def rate(fn, batch: int, repeats: int, device: str) -> float:
    """Images per second: the median of ``repeats`` timed calls after one warm-up."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return batch / sorted(times)[len(times) // 2]


def measure(case: str, batch: int, repeats: int, device: str) -> dict:
    model = build(case, device)
    res = CASES[case][0]
    real = torch.randn(batch, 3, res, res, device=device)
    data = FactorBatch(real, torch.rand(batch, 5, device=device), torch.ones(batch, dtype=torch.bool, device=device))
    latent = model.sample_latent(batch)

    def train_iteration():  # what SemiStyleGAN.training_step computes, without the optimizer
        _, loss_d = model.weighted_losses(model.loss_terms(data, latent, "d", penalty="r1"))
        torch.autograd.grad(loss_d, model.params_d)
        loss_g, _ = model.weighted_losses(model.loss_terms(data, latent, "g"))
        torch.autograd.grad(loss_g, model.params_g)

    with torch.no_grad():
        g_rate = rate(lambda: model.generator(latent), batch, repeats, device)
        d_rate = rate(lambda: model.discriminator(real), batch, repeats, device)
    row = {"case": case, "resolution": res, "batch": batch, "device": device,
           "params_g_M": sum(p.numel() for p in model.params_g) / 1e6,
           "params_d_M": sum(p.numel() for p in model.params_d) / 1e6,
           "g_images_per_s": g_rate, "d_images_per_s": d_rate,
           "train_images_per_s": rate(train_iteration, batch, repeats, device)}
    if device == "cuda":
        row["peak_mem_GiB"] = torch.cuda.max_memory_allocated() / 2**30
        torch.cuda.reset_peak_memory_stats()
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    cases = args.cases or (["smoke"] if args.smoke else ["default32", "64", "256"])
    batches = {"default32": 32, "64": 8, "256": 4, "1024": 4, "smoke": 4}
    if args.device == "cuda":
        batches.update({"64": 32, "256": 32, "1024": 8})
    rows = []
    print(f"{'case':>10} {'res':>5} {'batch':>5} {'G M':>6} {'D M':>6} {'G img/s':>9} {'D img/s':>9} {'train img/s':>11}")
    for case in cases:
        row = measure(case, batches[case], 1 if args.smoke else args.repeats, args.device)
        rows.append(row)
        print(f"{case:>10} {row['resolution']:>5} {row['batch']:>5} {row['params_g_M']:>6.2f} {row['params_d_M']:>6.2f} "
              f"{row['g_images_per_s']:>9.1f} {row['d_images_per_s']:>9.1f} {row['train_images_per_s']:>11.1f}",
              flush=True)
    suffix = "" if args.device == "cpu" else f"_{args.device}"
    out = write_results(f"stylegan_cost{suffix}", rows, args.smoke)
    print(f"-> {out}")
    return rows


if __name__ == "__main__":
    main()

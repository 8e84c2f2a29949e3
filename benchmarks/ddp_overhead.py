"""What exact data parallelism costs: the flat all-reduces of each method's iteration against the
iteration itself, on 2 CPU processes (gloo), default ring networks (4 x 128).

    python -m benchmarks.ddp_overhead            # the numbers in the README
    python -m benchmarks.ddp_overhead --smoke    # tiny networks, seconds (CI)

Each process times its local update direction (the part that does not communicate) and, separately,
the all-reduces that the method's direction performs (``game.algebra``: one for vanilla, two for
ConOpt/JARE, two for SGA, the second twice as long), with payloads of the real sizes; and, for
vanilla, the stock recipe (DDP over G and D, one backward per player, find_unused_parameters=True)
for the whole step. Then one top-6 spectrum of the gradient field (the callback's settings) with its
products shared by the 2 processes, each on half of the batch, against one process with both
threads on the whole batch. Prints a table and writes benchmarks/results/ddp_overhead.json.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from benchmarks.common import RESULTS, quiet, timed, write_results
from gans import JARE, SGA, ConOpt, Vanilla
from gans.networks import MLPDiscriminator, MLPGenerator
from runtime.distributed import mean_across_processes
from spectra.spectrum import compute_spectrum

#: all-reduced payload of one iteration, in units of the parameter count (see game/algebra.py)
PAYLOAD = {"vanilla": [1], "conopt": [1, 1], "jare": [1, 1], "sga": [1, 2]}
CLASSES = {"vanilla": Vanilla, "conopt": ConOpt, "jare": JARE, "sga": SGA}


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    return 1000 * timed(fn, repeats)


class StockVanilla(nn.Module):
    """The stock recipe (Lightning's GAN example under DDP): one DistributedDataParallel over G and
    D, one backward per player with the other player frozen, find_unused_parameters=True."""

    def __init__(self, generator: nn.Module, discriminator: nn.Module):
        super().__init__()
        self.generator, self.discriminator = generator, discriminator

    def forward(self, real, z, player: str):
        fake = self.generator(z)
        if player == "d":
            return F.softplus(-self.discriminator(real)).mean() + F.softplus(self.discriminator(fake.detach())).mean()
        return F.softplus(-self.discriminator(fake)).mean()


def stock_vanilla_ms(width: int, batch: int, repeats: int) -> float:
    torch.manual_seed(0)
    model = StockVanilla(MLPGenerator(64, 2, width, 4), MLPDiscriminator(2, width, 4))
    ddp = DistributedDataParallel(model, find_unused_parameters=True)
    real, z = torch.randn(batch, 2), torch.randn(batch, 64)

    def step():
        for player, frozen in (("d", model.generator), ("g", model.discriminator)):
            for p in frozen.parameters():
                p.requires_grad_(False)
            ddp(real, z, player).backward()
            for p in frozen.parameters():
                p.requires_grad_(True)

    return median_ms(step, repeats)


def spectrum_seconds(width: int, batch: int, shard: slice | None = None) -> tuple[float, int]:
    """Seconds and products of a top-6 spectrum of vanilla's gradient field on ``shard`` of a batch
    (under torch.distributed the products of the shards are averaged: the whole batch's spectrum)."""
    torch.manual_seed(0)
    model = Vanilla(MLPGenerator(64, 2, width, 4), MLPDiscriminator(2, width, 4), latent_dim=64, loss="ns")
    gen = torch.Generator().manual_seed(1)
    real, z = torch.randn(batch, 2, generator=gen), torch.randn(batch, 64, generator=gen)
    shard = shard or slice(None)
    options = dict(field="gradient", k=6, k_smallest=1, dtype=torch.float32, tol=1e-4)
    result = compute_spectrum(model, real[shard], z[shard], **options)  # warm-up
    seconds = timed(lambda: compute_spectrum(model, real[shard], z[shard], **options), repeats=3)
    return seconds, result.products


def _worker(rank: int, world: int, port: int, width: int, batch: int, repeats: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    rows = []
    for name, cls in CLASSES.items():
        torch.manual_seed(0)
        model = cls(MLPGenerator(64, 2, width, 4), MLPDiscriminator(2, width, 4), latent_dim=64, loss="ns")
        real, z = torch.randn(batch, 2), torch.randn(batch, 64)
        local_ms = median_ms(lambda: model.update_direction(real, z), repeats)
        params = model.params_g + model.params_d
        payloads = [[torch.randn_like(p) for p in params for _ in range(k)] for k in PAYLOAD[name]]
        dist.barrier()
        reduce_ms = median_ms(lambda: [mean_across_processes(p) for p in payloads], repeats)
        rows.append({"model": name, "params": sum(p.numel() for p in params), "local_ms": local_ms,
                     "allreduce_ms": reduce_ms, "overhead": reduce_ms / local_ms})
    stock = stock_vanilla_ms(width, batch, repeats)
    exact = rows[0]["local_ms"] + rows[0]["allreduce_ms"]
    rows.append({"model": "vanilla, stock DDP", "params": rows[0]["params"], "local_ms": stock, "allreduce_ms": 0.0,
                 "overhead": 0.0, "exact_over_stock": exact / stock})
    half = batch  # each process takes half of a spectrum batch of 2 x batch
    seconds, products = spectrum_seconds(width, 2 * batch, slice(rank * half, (rank + 1) * half))
    rows.append({"model": "spectrum, 2 processes", "params": rows[0]["params"], "seconds": seconds, "products": products})
    if rank == 0:
        Path(out).write_text(json.dumps(rows))
    dist.destroy_process_group()


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    quiet()
    width, batch, repeats = (8, 16, 3) if args.smoke else (128, 64, 30)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"ddp_overhead_workers{'_smoke' if args.smoke else ''}.json"
    mp.start_processes(_worker, args=(2, port, width, batch, repeats, str(out)), nprocs=2, start_method="spawn")
    rows = json.loads(out.read_text())
    torch.set_num_threads(2)
    seconds, products = spectrum_seconds(width, 2 * batch)
    rows.append({"model": "spectrum, 1 process", "params": rows[0]["params"], "seconds": seconds, "products": products})
    print(f"{'model':18s} {'params':>8s} {'local ms':>9s} {'all-reduce ms':>14s} {'overhead':>9s}")
    for r in rows[:-3]:
        print(f"{r['model']:18s} {r['params']:8d} {r['local_ms']:9.2f} {r['allreduce_ms']:14.2f} {100 * r['overhead']:8.1f}%")
    stock = rows[-3]
    print(f"{stock['model']:18s} {stock['params']:8d} {stock['local_ms']:9.2f} (backward with DDP hooks, both players)")
    print(f"exact vanilla iteration / stock DDP iteration: {stock['exact_over_stock']:.2f}")
    shared, alone = rows[-2:]
    print(f"top-6 spectrum of the gradient field, batch {2 * batch}: 2 processes sharing the products "
          f"{shared['seconds']:.2f} s ({shared['products']} products), 1 process with 2 threads {alone['seconds']:.2f} s "
          f"({alone['products']}): {alone['seconds'] / shared['seconds']:.2f}x")
    out.unlink()
    write_results("ddp_overhead", rows, args.smoke, processes=2, threads_per_process=1, batch_per_process=batch,
                  os_cpus=os.cpu_count())
    return rows


if __name__ == "__main__":
    main()

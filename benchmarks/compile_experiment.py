"""Can torch.compile speed up a second-order step? Our training path differentiates the field again
with ``autograd.grad(create_graph=True)``, which torch.compile's AOTAutograd cannot compile (it has
no double backward). The same JARE direction written with torch.func (``grad`` inside ``vjp``) is a
pure function of the parameters, which torch.compile does compile. This measures, on the ring MLPs
of the JARE paper (zero-sum loss, batch 128): our eager direction, the torch.func direction eager
and compiled, and checks that all three agree.

    python benchmarks/compile_experiment.py            # about a minute (compilation included)
    python benchmarks/compile_experiment.py --smoke    # tiny networks, no compilation (CI)

Prints a table and writes benchmarks/results/compile_experiment.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vjp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import quiet, timed, write_results  # noqa: E402
from gans import JARE  # noqa: E402
from gans.networks import MLPDiscriminator, MLPGenerator  # noqa: E402


def func_jare(model: JARE, real: torch.Tensor, z: torch.Tensor):
    """JARE's direction as a function of the parameter dicts (zero-sum loss): one field and its vjp
    closure, then the two off-diagonal products H21^T xi_theta and H12^T xi_phi."""
    g, d, gamma = model.generator, model.discriminator, model.gamma

    def loss_d(pg, pd):
        fake = functional_call(g, pg, (z,))
        return (F.softplus(-functional_call(d, pd, (real,)).reshape(-1)).mean()
                + F.softplus(functional_call(d, pd, (fake,)).reshape(-1)).mean())

    def direction(pg, pd):
        (gg, gd), products = vjp(grad(loss_d, argnums=(0, 1)), pg, pd)
        zeros_g, zeros_d = ({k: torch.zeros_like(v) for k, v in t.items()} for t in (gg, gd))
        corr_g = products((zeros_g, gd))[0]          # grad_phi 1/2 ||xi_theta||^2
        corr_d = products((gg, zeros_d))[1]          # grad_theta 1/2 ||xi_phi||^2 (xi_phi = -gg)
        return ({k: -gg[k] + gamma * corr_g[k] for k in gg}, {k: gd[k] + gamma * corr_d[k] for k in gd})

    return direction


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny networks, no compilation (CI)")
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)
    quiet()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    width, latent, batch, repeats = (8, 4, 16, 3) if args.smoke else (256, 64, 128, args.repeats)
    torch.manual_seed(0)
    model = JARE(MLPGenerator(latent, 2, width, 4), MLPDiscriminator(2, width, 4), latent_dim=latent,
                 loss="zero_sum", gamma=1000.0)
    real, z = torch.randn(batch, 2), 2 * torch.randn(batch, latent)
    pg = {k: v.detach() for k, v in model.generator.named_parameters()}
    pd = {k: v.detach() for k, v in model.discriminator.named_parameters()}
    ours = lambda: model.update_direction(real, z)  # noqa: E731
    functional = func_jare(model, real, z)
    reference = torch.cat([t.reshape(-1) for t in sum(ours(), [])])

    def check(fn) -> float:
        ug, ud = fn(pg, pd)
        got = torch.cat([t.reshape(-1) for t in [*ug.values(), *ud.values()]])
        return float((got - reference).abs().max() / reference.abs().max())

    rows = [{"case": "ours: autograd.grad(create_graph=True), eager", "ms": 1000 * timed(ours, repeats),
             "max_rel_diff": 0.0},
            {"case": "torch.func grad inside vjp, eager", "ms": 1000 * timed(lambda: functional(pg, pd), repeats),
             "max_rel_diff": check(functional)}]
    if not args.smoke:
        compiled = torch.compile(functional)
        start = time.perf_counter()
        compiled(pg, pd)
        rows.append({"case": "torch.func grad inside vjp, torch.compile", "compile_s": time.perf_counter() - start,
                     "ms": 1000 * timed(lambda: compiled(pg, pd), repeats), "max_rel_diff": check(compiled)})
    print(f"{'JARE direction, 4 x %d MLPs, batch %d' % (width, batch):52s} {'ms':>8s} {'vs ours':>8s} {'max rel diff':>13s}")
    for r in rows:
        extra = f"  (compilation {r['compile_s']:.0f} s)" if "compile_s" in r else ""
        print(f"{r['case']:52s} {r['ms']:8.2f} {r['ms'] / rows[0]['ms']:8.2f} {r['max_rel_diff']:13.1e}{extra}")
    write_results("compile_experiment", rows, args.smoke, width=width, batch=batch)
    return rows


if __name__ == "__main__":
    main()

"""Can torch.compile speed up a second-order step? Our training path differentiates the field again
with ``autograd.grad(create_graph=True)``, which torch.compile's AOTAutograd cannot compile (it has
no double backward). The same JARE direction written with torch.func (``grad`` inside ``vjp``) is a
pure function of the parameters, which torch.compile does compile. This measures, on the ring MLPs
of the JARE paper (4 x 256, batch 128) and of the ConOpt paper (4 x 16, batch 512), zero-sum loss:
our eager direction, the torch.func direction eager and compiled, and checks that all three agree.

    python -m benchmarks.compile_experiment            # about two minutes (compilation included)
    python -m benchmarks.compile_experiment --smoke    # tiny networks, no compilation (CI)

Prints a table and writes benchmarks/results/compile_experiment.json.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vjp

from benchmarks.common import quiet, timed, write_results
from gans import JARE
from gans.networks import MLPDiscriminator, MLPGenerator


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


#: (width, latent, batch): the JARE paper's ring networks and the ConOpt paper's tiny ones
SIZES = {"ring256": (256, 64, 128), "ring16": (16, 16, 512)}


def measure(width: int, latent: int, batch: int, repeats: int, compile_too: bool) -> list[dict]:
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

    size = f"4 x {width} MLPs, batch {batch}"
    rows = [{"size": size, "case": "ours: autograd.grad(create_graph=True), eager", "ms": 1000 * timed(ours, repeats),
             "max_rel_diff": 0.0},
            {"size": size, "case": "torch.func grad inside vjp, eager",
             "ms": 1000 * timed(lambda: functional(pg, pd), repeats), "max_rel_diff": check(functional)}]
    if compile_too:
        compiled = torch.compile(functional)
        start = time.perf_counter()
        compiled(pg, pd)
        compile_s = time.perf_counter() - start
        for _ in range(10):  # warm-up after compilation, as the eager cases had their first calls
            compiled(pg, pd)
        rows.append({"size": size, "case": "torch.func grad inside vjp, torch.compile", "compile_s": compile_s,
                     "ms": 1000 * timed(lambda: compiled(pg, pd), repeats), "max_rel_diff": check(compiled)})
    for r in rows:
        r["vs_ours"] = r["ms"] / rows[0]["ms"]
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny networks, no compilation (CI)")
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args(argv)
    quiet()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    if args.smoke:
        rows = measure(8, 4, 16, 3, compile_too=False)
    else:
        rows = [r for key in args.sizes for r in measure(*SIZES[key], args.repeats, compile_too=True)]
    print(f"{'JARE direction':24s} {'case':44s} {'ms':>8s} {'vs ours':>8s} {'max rel diff':>13s}")
    for r in rows:
        extra = f"  (compilation {r['compile_s']:.0f} s)" if "compile_s" in r else ""
        print(f"{r['size']:24s} {r['case']:44s} {r['ms']:8.2f} {r['vs_ours']:8.2f} {r['max_rel_diff']:13.1e}{extra}")
    write_results("compile_experiment", rows, args.smoke)
    return rows


if __name__ == "__main__":
    main()

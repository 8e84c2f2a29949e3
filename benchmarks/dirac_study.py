"""The Dirac-GAN (Mescheder et al. 2018): each method's trajectory in the (theta, psi) plane from
(1, 1) with step 0.1, and the eigenvalues of its update Jacobian at the equilibrium (0, 0) against
theory (vanilla +-0.5i; ConOpt, JARE and SGA 0.25 gamma +- 0.5i; extragradient eta_e / 4 +- 0.5i;
CGD (eta / 4 +- 0.5i) / (1 + eta^2 / 4); R1 (gamma +- sqrt(gamma^2 - 1)) / 2; the optimistic
direction has no Jacobian of its own: its panel shows H).

    python -m benchmarks.dirac_study            # docs/figures/dirac_trajectories.png (seconds)
    python -m benchmarks.dirac_study --smoke    # fewer steps (CI)

Prints a table and writes benchmarks/results/dirac_study.json.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from matplotlib.figure import Figure

from benchmarks.common import quiet, write_results
from datamodules import MixtureOfGaussians
from game.methods import CompetitiveGradient, Extragradient, OptimisticGradient
from gans import JARE, SGA, ConOpt, TwoPlayerGAN, Vanilla
from gans.networks import DiracGenerator, LinearDiscriminator
from spectra.spectrum import compute_spectrum

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"
GAMMA = 1.0
CASES = {
    "simultaneous GD": (Vanilla, {}, [0.5j, -0.5j]),
    "alternating GD": (Vanilla, {"update": "alternating"}, [0.5j, -0.5j]),
    "ConOpt": (ConOpt, {"gamma": GAMMA}, [0.25 * GAMMA + 0.5j, 0.25 * GAMMA - 0.5j]),
    "JARE": (JARE, {"gamma": GAMMA}, [0.25 * GAMMA + 0.5j, 0.25 * GAMMA - 0.5j]),
    "SGA": (SGA, {"lam": GAMMA}, [0.25 * GAMMA + 0.5j, 0.25 * GAMMA - 0.5j]),
    "extragradient": (TwoPlayerGAN, {"method": Extragradient()}, [0.025 + 0.5j, 0.025 - 0.5j]),  # eta_e = lr = 0.1
    "optimistic GD": (TwoPlayerGAN, {"method": OptimisticGradient()}, [0.5j, -0.5j]),          # H itself
    "CGD": (TwoPlayerGAN, {"method": CompetitiveGradient(eta=GAMMA)}, [0.2 + 0.4j, 0.2 - 0.4j]),
    "simultaneous GD + R1": (Vanilla, {"penalty": "r1", "penalty_weight": GAMMA}, [0.5, 0.5]),
}
#: the methods whose direction has no Jacobian of its own: their panel shows the game's H
GRADIENT_FIELD = {"optimistic GD"}


def dirac(cls, theta: float, psi: float, kw: dict, lr: float = 0.1):
    """G = delta_theta, D(x) = psi x, data at 0; our D scores reals positive, so Mescheder's start
    (1, 1) is our (1, -1) and we plot -psi."""
    return cls(DiracGenerator(1, theta), LinearDiscriminator(1, psi), latent_dim=1, loss="zero_sum",
               optimizer=lambda params: torch.optim.SGD(params, lr=lr), **kw).double()


class Trajectory(pl.Callback):
    def __init__(self, start: tuple[float, float]):
        self.points = [start]

    def on_train_batch_end(self, trainer, module, *args) -> None:
        self.points.append((module.generator.theta.item(), -module.discriminator.psi.item()))


def run(cls, kw: dict, steps: int) -> np.ndarray:
    traj = Trajectory((1.0, 1.0))
    trainer = pl.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", callbacks=[traj])
    trainer.fit(dirac(cls, 1.0, -1.0, kw), datamodule=MixtureOfGaussians(kind="custom", modes=[[0.0]], std=0.0,
                                                                          batch_size=4))
    return np.array(traj.points)


def equilibrium_eigenvalues(cls, kw: dict, field: str = "update") -> np.ndarray:
    model = dirac(cls, 0.0, 0.0, kw)
    zeros = torch.zeros(4, 1, dtype=torch.float64)
    return compute_spectrum(model, zeros, zeros, field=field).eigenvalues


def figure(paths: dict[str, np.ndarray], eigs: dict[str, np.ndarray]) -> Figure:
    columns = (len(paths) + 1) // 2
    fig = Figure(figsize=(2.6 * columns, 10.4), dpi=110)
    for i, (name, path) in enumerate(paths.items()):
        row, col = divmod(i, columns)
        ax = fig.add_subplot(4, columns, 2 * row * columns + col + 1)
        ax.plot(path[:, 0], path[:, 1], lw=0.8)
        ax.plot(*path[0], "ko", ms=4)
        ax.plot(0, 0, "r*", ms=9)
        lim = max(1.6, float(np.abs(path).max()) * 1.05)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("theta (generator)", fontsize=8)
        if col == 0:
            ax.set_ylabel("psi (discriminator)", fontsize=8)
        ax = fig.add_subplot(4, columns, (2 * row + 1) * columns + col + 1)
        ev = eigs[name]
        ax.axvline(0, color="grey", lw=0.6)
        ax.axhline(0, color="grey", lw=0.6)
        ax.plot(ev.real, ev.imag, "x", ms=8)
        ax.set_xlim(-0.1, 0.6)
        ax.set_ylim(-0.7, 0.7)
        ax.set_xlabel("Re lambda" + (" (of H)" if name in GRADIENT_FIELD else ""), fontsize=8)
        if col == 0:
            ax.set_ylabel("Im lambda at (0, 0)", fontsize=8)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="fewer steps, no figure (CI)")
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args(argv)
    quiet()
    steps = 20 if args.smoke else args.steps
    paths = {name: run(cls, kw, steps) for name, (cls, kw, _) in CASES.items()}
    eigs = {name: equilibrium_eigenvalues(cls, kw, "gradient" if name in GRADIENT_FIELD else "update")
            for name, (cls, kw, _) in CASES.items()}
    rows = []
    for name, (_, _, theory) in CASES.items():
        ev = np.sort_complex(eigs[name])
        rows.append({"method": name, "final_distance": float(np.linalg.norm(paths[name][-1])),
                     "eigenvalues": [[z.real, z.imag] for z in ev],
                     "theory_error": float(np.abs(ev - np.sort_complex(np.array(theory))).max())})
    print(f"{'method':22s} {'|x| after ' + str(steps):>14s}  eigenvalues at (0, 0)         |error vs theory|")
    for r in rows:
        ev = ", ".join(f"{a:+.3f}{b:+.3f}i" for a, b in r["eigenvalues"])
        print(f"{r['method']:22s} {r['final_distance']:14.3f}  {ev:28s} {r['theory_error']:.1e}")
    if not args.smoke:
        FIGURES.mkdir(parents=True, exist_ok=True)
        figure(paths, eigs).savefig(FIGURES / "dirac_trajectories.png")
    write_results("dirac_study", rows, args.smoke, steps=steps, gamma=GAMMA)
    return rows


if __name__ == "__main__":
    main()

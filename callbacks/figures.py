"""Every figure the callbacks and commands draw: matplotlib figures (no pyplot: nothing global,
safe in any process) and image grids."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Circle
from torch import Tensor
from torchvision.utils import make_grid

if TYPE_CHECKING:
    from gans.spectrum import SpectrumResult


def figure_image(fig: Figure) -> np.ndarray:
    """The figure rendered as an RGB array (H, W, 3), for loggers that take images only."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def scatter_figure(samples: Tensor, modes: Tensor, std: float, threshold: float, title: str) -> Figure:
    """Generated samples (dots) over the true modes (crosses, with their threshold circles)."""
    fig = Figure(figsize=(5, 5), dpi=100)
    ax = fig.add_subplot()
    s, m = samples.detach().cpu().numpy(), modes.cpu().numpy()
    ax.scatter(s[:, 0], s[:, 1] if s.shape[1] > 1 else 0 * s[:, 0], s=3, alpha=0.4, color="tab:blue", label="generated")
    ax.scatter(m[:, 0], m[:, 1] if m.shape[1] > 1 else 0 * m[:, 0], marker="x", color="tab:red", label="modes")
    if m.shape[1] > 1:
        for x, y in m[:, :2]:
            ax.add_patch(Circle((x, y), threshold * std, fill=False, color="tab:red", lw=0.6, alpha=0.6))
    span = max(float(abs(m if len(m) else s).max()) * 1.5, 1.0)
    ax.set_xlim(-span, span)
    ax.set_ylim(-span, span)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right", fontsize=7)
    return fig


def curves_figure(history: list[dict], num_modes: int) -> Figure:
    """Modes covered, high-quality percentage and KL to uniform against iterations."""
    fig = Figure(figsize=(11, 3), dpi=100)
    its = [r["iteration"] for r in history]
    panels = (("modes_covered", "modes covered", num_modes), ("high_quality", "high-quality samples (%)", 100),
              ("kl_uniform", "KL to uniform (0: even)", math.log(max(num_modes, 2))))
    for i, (key, label, top) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        ax.plot(its, [r[key] for r in history], marker="o")
        ax.set_ylim(0, top * 1.05)
        ax.set_xlabel("iteration")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def eigenvalue_figure(results: dict[str, SpectrumResult], title: str) -> Figure:
    """The eigenvalues in the complex plane, one panel per field, side by side."""
    fig = Figure(figsize=(4.5 * len(results), 4), dpi=100)
    for i, (name, res) in enumerate(results.items()):
        ax = fig.add_subplot(1, len(results), i + 1)
        ev = res.eigenvalues
        ax.scatter(ev.real, ev.imag, s=12, alpha=0.7)
        ax.axvline(0, color="gray", lw=0.6)
        ax.axhline(0, color="gray", lw=0.6)
        ax.set_xlabel("Re λ")
        ax.set_ylabel("Im λ")
        ax.set_title(f"{name} field ({res.mode}, {res.num_params} params)\nphase {res.phase_factor:.3g}, "
                     f"condition {res.condition_number:.3g}", fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def history_figure(history: list[dict]) -> Figure:
    """Phase factor and condition number against iterations, one line per field, and the learning
    rate in use against the largest stable step size of each field's spectrum (the steps contract
    below that line; a field with no stable step at an iteration has no point there)."""
    fig = Figure(figsize=(13, 3.2), dpi=100)
    names = sorted({r["field"] for r in history})
    for i, key in enumerate(("phase_factor", "condition_number")):
        ax = fig.add_subplot(1, 3, i + 1)
        positive = False
        for name in names:
            rows = [r for r in history if r["field"] == name and np.isfinite(r[key])]
            ax.plot([r["iteration"] for r in rows], [r[key] for r in rows], marker="o", label=name)
            positive |= any(r[key] > 0 for r in rows)
        if positive:  # a phase factor of 0 everywhere (real spectrum) has no log scale
            ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel(key.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax = fig.add_subplot(1, 3, 3)
    for name in names:
        rows = [r for r in history if r["field"] == name and r.get("stable_step") is not None]
        ax.plot([r["iteration"] for r in rows], [r["stable_step"] for r in rows], marker="o", label=f"stable step, {name}")
    with_lr = [r for r in history if r.get("lr") is not None and r["field"] == names[0]]
    ax.plot([r["iteration"] for r in with_lr], [r["lr"] for r in with_lr], "k--", label="learning rate")
    if any(r.get("stable_step") for r in history) or with_lr:
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("step size" + (" (preconditioned)" if any(r.get("preconditioned") for r in history) else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def sweep_curves_figure(history: list[dict], num_modes: int, label: str | None = None) -> Figure:
    """Modes covered and high-quality percentage against iterations, one line per sweep member,
    coloured by the swept setting ``label`` (by member without one)."""
    fig = Figure(figsize=(11, 3.4), dpi=100)
    members = sorted({r["member"] for r in history})
    values = sorted({r[label] for r in history}) if label else members
    colours = {v: f"C{i % 10}" for i, v in enumerate(values)}
    for i, (key, name, top) in enumerate((("modes_covered", "modes covered", num_modes),
                                          ("high_quality", "high-quality samples (%)", 100))):
        ax = fig.add_subplot(1, 2, i + 1)
        shown = set()
        for m in members:
            rows = [r for r in history if r["member"] == m]
            key_value = rows[0][label] if label else m
            ax.plot([r["iteration"] for r in rows], [r[key] for r in rows], color=colours[key_value], alpha=0.6,
                    marker=".", label=None if key_value in shown or len(values) > 12 else f"{label or 'member'} {key_value:g}")
            shown.add(key_value)
        ax.set_ylim(0, top * 1.05)
        ax.set_xlabel("iteration")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        if shown and len(values) <= 12:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def sweep_map_figure(rows: list[dict], x: str, y: str, keys: list[tuple[str, str]], title: str) -> Figure:
    """A heat map per outcome ``keys`` ((column, label), ...) over the grid of settings ``x`` and
    ``y``: the mean over the members at each point of the grid (over seeds), with the value written
    in each cell. A cell whose members all diverged shows 'div.'."""
    xs, ys = sorted({r[x] for r in rows}), sorted({r[y] for r in rows})
    fig = Figure(figsize=(4.2 * len(keys), 3.6), dpi=100)
    for i, (key, label) in enumerate(keys):
        grid = np.full((len(ys), len(xs)), np.nan)
        for a, xv in enumerate(xs):
            for b, yv in enumerate(ys):
                cell = [r[key] for r in rows if r[x] == xv and r[y] == yv and not r["diverged"]
                        and r.get(key) is not None and np.isfinite(r[key])]
                if cell:
                    grid[b, a] = float(np.mean(cell))
        ax = fig.add_subplot(1, len(keys), i + 1)
        image = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis")
        fig.colorbar(image, ax=ax)
        for a in range(len(xs)):
            for b in range(len(ys)):
                ax.text(a, b, "div." if np.isnan(grid[b, a]) else f"{grid[b, a]:.3g}", ha="center", va="center",
                        fontsize=7, color="w")
        ax.set_xticks(range(len(xs)), [f"{v:g}" for v in xs], fontsize=7)
        ax.set_yticks(range(len(ys)), [f"{v:g}" for v in ys], fontsize=7)
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title(label, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def fid_curve(history: list[dict]) -> Figure:
    """FID (and KID) against iterations."""
    fig = Figure(figsize=(8 if "kid_mean" in history[-1] else 4.5, 3), dpi=100)
    keys = [("fid", "FID")] + ([("kid_mean", "KID")] if "kid_mean" in history[-1] else [])
    for i, (key, label) in enumerate(keys):
        ax = fig.add_subplot(1, len(keys), i + 1)
        ax.plot([r["iteration"] for r in history], [r[key] for r in history], marker="o")
        ax.set_xlabel("iteration")
        ax.set_ylabel(f"{label} ({history[-1]['num_samples']} samples, {history[-1]['features']})")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def traversal_figure(grid: Tensor, labels: list[str], steps: int, title: str) -> Figure:
    """The traversal grid with each row named after its factor and the columns after the code's value."""
    image = grid.permute(1, 2, 0).numpy()
    rows, height = len(labels), image.shape[0]
    fig = Figure(figsize=(1.2 + 0.9 * steps, 0.4 + 0.9 * rows), dpi=100)
    ax = fig.add_subplot()
    ax.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None)
    ax.set_yticks([(k + 0.5) * height / rows for k in range(rows)], labels, fontsize=8)
    ax.set_xticks([(j + 0.5) * image.shape[1] / steps for j in range(steps)],
                  [f"{v:.2f}" for v in torch.linspace(0, 1, steps).tolist()], fontsize=7)
    ax.set_xlabel("code value")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


DISENTANGLEMENT_CURVES = (("mig", "MIG"), ("mig_gen", "MIG-gen"), ("l2", "L2"), ("l2_gen", "L2-gen"))


def disentanglement_curves(history: list[dict]) -> Figure:
    """The four metrics against iterations."""
    fig = Figure(figsize=(10, 2.8), dpi=100)
    for i, (key, label) in enumerate(DISENTANGLEMENT_CURVES):
        ax = fig.add_subplot(1, len(DISENTANGLEMENT_CURVES), i + 1)
        ax.plot([r["iteration"] for r in history], [r[key] for r in history], marker="o")
        ax.set_title(label)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def image_grid(images: Tensor, nrow: int = 8) -> Tensor:
    """A (C, H', W') grid in [0, 1] of images in [-1, 1]."""
    return make_grid(images.detach().float().cpu().clamp(-1, 1), nrow=nrow, normalize=True, value_range=(-1, 1),
                     pad_value=1.0)

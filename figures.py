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
from matplotlib.ticker import MaxNLocator
from torch import Tensor
from torchvision.utils import make_grid

if TYPE_CHECKING:
    from spectra.spectrum import SpectrumResult


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


def iteration_axis(ax, iterations: list[int]) -> None:
    """Label the x axis of ``ax`` as iterations: whole-number ticks only (an iteration has no
    halves), and a single evaluation gets a window of one iteration around it, so that its one tick
    is its own iteration instead of made-up neighbours."""
    ax.set_xlabel("iteration")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    distinct = set(iterations)
    if len(distinct) == 1:
        it = distinct.pop()
        ax.set_xlim(it - 0.5, it + 0.5)


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
        iteration_axis(ax, its)
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
    rate in use against the largest stable step size of each field's spectrum (``stable_step_panel``)."""
    fig = Figure(figsize=(13, 3.2), dpi=100)
    names = sorted({r["field"] for r in history})
    its = [r["iteration"] for r in history]
    for i, key in enumerate(("phase_factor", "condition_number")):
        ax = fig.add_subplot(1, 3, i + 1)
        positive = False
        for name in names:
            rows = [r for r in history if r["field"] == name and np.isfinite(r[key])]
            ax.plot([r["iteration"] for r in rows], [r[key] for r in rows], marker="o", label=name)
            positive |= any(r[key] > 0 for r in rows)
        if positive:  # a phase factor of 0 everywhere (real spectrum) has no log scale
            ax.set_yscale("log")
        iteration_axis(ax, its)
        ax.set_ylabel(key.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    stable_step_panel(fig.add_subplot(1, 3, 3), history, names)
    fig.tight_layout()
    return fig


#: what the stable-step panel says when no evaluation has a stable step size
NO_STABLE_STEP = ("no stable step size at any evaluation (×):\nan eigenvalue has a non-positive real part,\n"
                  "so no step size contracts")


def has_stable_step(record: dict) -> bool:
    """Whether a spectrum record has a stable step size (none: the key is absent or None, as
    ``SpectrumResult.scalars`` leaves it when an eigenvalue has a non-positive real part)."""
    step = record.get("stable_step")
    return step is not None and bool(np.isfinite(step)) and step > 0


def stable_step_panel(ax, history: list[dict], names: list[str]) -> None:
    """The largest stable step size of each field's spectrum against iterations, with the learning
    rate in use as a dashed line (the steps contract below the field's line). An evaluation with no
    stable step gets a cross at the foot of the panel in the field's colour; when none has one, the
    panel says so in words and leaves out the learning rate (there is nothing to compare it with)."""
    any_step = any(has_stable_step(r) for r in history)
    foot = ax.get_xaxis_transform()  # x in iterations, y in axes fractions: the foot of the panel
    for k, name in enumerate(names):
        rows = [r for r in history if r["field"] == name]
        steps = [r for r in rows if has_stable_step(r)]
        missing = [r["iteration"] for r in rows if not has_stable_step(r)]
        if steps:
            ax.plot([r["iteration"] for r in steps], [r["stable_step"] for r in steps], marker="o", color=f"C{k}",
                    label=f"stable step, {name}")
        if missing:
            ax.plot(missing, [0.04] * len(missing), "x", color=f"C{k}", transform=foot, clip_on=False,
                    label=f"no stable step, {name}")
    if any_step:
        with_lr = [r for r in history if r.get("lr") is not None and r["field"] == names[0]]
        if with_lr:
            ax.plot([r["iteration"] for r in with_lr], [r["lr"] for r in with_lr], "k--", label="learning rate")
        ax.set_yscale("log")
        if not all(has_stable_step(r) for r in history):
            ax.margins(y=0.15)  # the lines keep clear of the crosses at the foot
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.55, NO_STABLE_STEP, transform=ax.transAxes, ha="center", va="center", fontsize=8, wrap=True)
        ax.set_yticks([])
    iteration_axis(ax, [r["iteration"] for r in history])
    ax.set_ylabel("step size" + (" (preconditioned)" if any(r.get("preconditioned") for r in history) else ""))
    ax.grid(alpha=0.3)


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
        iteration_axis(ax, [r["iteration"] for r in history])
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        if shown and len(values) <= 12:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


#: the natural colour range (low, high) of the outcomes in the sweep table; None: the data sets that
#: end. Only the caller knows the number of modes: ``ranges={"modes_covered": (0, num_modes)}``.
OUTCOME_RANGES: dict[str, tuple[float | None, float | None]] = {
    "modes_covered": (0, None), "best_modes_covered": (0, None), "high_quality": (0, 100),
    "best_high_quality": (0, 100), "kl_uniform": (0, None), "phase_factor": (0, None)}


def colour_range(values: np.ndarray, natural: tuple[float | None, float | None] = (None, None)
                 ) -> tuple[float, float, float | None]:
    """The colour range (low, high) of a heat map of ``values`` (NaN: no value): the quantity's
    ``natural`` range, the data's end where it has none (and the data's wherever the data go past
    it). A map with one value and no natural range to spread it over gets a range centred on that
    value, cut at the natural bounds (never below 0 for a quantity that cannot be negative); the
    third item is then that value, for the colour bar to label alone (None otherwise)."""
    finite = values[np.isfinite(values)]
    low, high = natural
    fallback = low if low is not None else high if high is not None else 0.0
    data_low, data_high = (float(finite.min()), float(finite.max())) if finite.size else (fallback, fallback)
    lo = data_low if low is None else min(low, data_low)
    hi = data_high if high is None else max(high, data_high)
    if hi > lo:
        return float(lo), float(hi), None
    half = abs(lo) * 0.1 or 1.0
    lo = lo - half if low is None else max(lo - half, min(low, lo))
    hi = hi + half if high is None else min(hi + half, max(high, hi))
    return float(lo), float(max(hi, lo + half)), data_low if finite.size else None


def map_cells(rows: list[dict], x: str, y: str, key: str) -> tuple[np.ndarray, dict[tuple[int, int], str]]:
    """The grid (rows: values of ``y``, columns: values of ``x``) of the mean of ``key`` over the
    members at each point that did not diverge, and what to write in a cell without a value: 'div.'
    where every member diverged, '–' where none has ``key`` (e.g. no spectrum) or the point has no member."""
    xs, ys = sorted({r[x] for r in rows}), sorted({r[y] for r in rows})
    grid, blanks = np.full((len(ys), len(xs)), np.nan), {}
    for a, xv in enumerate(xs):
        for b, yv in enumerate(ys):
            members = [r for r in rows if r[x] == xv and r[y] == yv]
            cell = [r[key] for r in members if not r["diverged"] and r.get(key) is not None and np.isfinite(r[key])]
            if cell:
                grid[b, a] = float(np.mean(cell))
            else:
                blanks[b, a] = "div." if members and all(r["diverged"] for r in members) else "–"
    return grid, blanks


def sweep_map_figure(rows: list[dict], x: str, y: str, keys: list[tuple[str, str]], title: str,
                     ranges: dict[str, tuple[float | None, float | None]] | None = None) -> Figure:
    """A heat map per outcome ``keys`` ((column, label), ...) over the grid of settings ``x`` and
    ``y``: the mean over the members at each point of the grid (over seeds), with the value written
    in each cell (``map_cells``: 'div.' where all diverged). The colours span each outcome's natural
    range (``OUTCOME_RANGES``, updated by ``ranges``, e.g. ``{"modes_covered": (0, num_modes)}``),
    else the data's (``colour_range``)."""
    xs, ys = sorted({r[x] for r in rows}), sorted({r[y] for r in rows})
    known = {**OUTCOME_RANGES, **(ranges or {})}
    fig = Figure(figsize=(4.2 * len(keys), 3.6), dpi=100)
    for i, (key, label) in enumerate(keys):
        grid, blanks = map_cells(rows, x, y, key)
        low, high, constant = colour_range(grid, known.get(key, (None, None)))
        ax = fig.add_subplot(1, len(keys), i + 1)
        image = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis", vmin=low, vmax=high)
        bar = fig.colorbar(image, ax=ax)
        if constant is not None:
            bar.set_ticks([constant], labels=[f"{constant:.3g}"])
        for a in range(len(xs)):
            for b in range(len(ys)):
                value = grid[b, a]
                ax.text(a, b, blanks[b, a] if np.isnan(value) else f"{value:.3g}", ha="center", va="center",
                        fontsize=7, color="k" if np.isnan(value) or image.norm(value) > 0.6 else "w")
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
        iteration_axis(ax, [r["iteration"] for r in history])
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
        iteration_axis(ax, [r["iteration"] for r in history])
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def image_grid(images: Tensor, nrow: int = 8) -> Tensor:
    """A (C, H', W') grid in [0, 1] of images in [-1, 1]."""
    return make_grid(images.detach().float().cpu().clamp(-1, 1), nrow=nrow, normalize=True, value_range=(-1, 1),
                     pad_value=1.0)

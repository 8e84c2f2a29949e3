"""The figures say what the numbers say: iterations are whole numbers, an empty panel says why, and
a heat map's colours span the quantity's own range. The figures are ``matplotlib.figure.Figure``
objects made without pyplot: nothing global to close, they go with the garbage."""
from __future__ import annotations

import numpy as np
import pytest
from matplotlib.ticker import MaxNLocator

import figures


def record(iteration: int, **extra) -> dict:
    """One evaluation with the keys of every curve figure."""
    return {"iteration": iteration, "modes_covered": 3, "high_quality": 50.0, "kl_uniform": 0.5,  # mixture
            "field": "update", "phase_factor": 1.0, "condition_number": 4.0, "lr": 1e-3,  # spectrum
            "stable_step": 1e-2, "member": 0, "gamma": 0.1,  # sweep
            "fid": 30.0, "kid_mean": 0.01, "num_samples": 100, "features": "inception",  # FID
            "mig": 0.1, "mig_gen": 0.2, "l2": 0.3, "l2_gen": 0.4, **extra}  # disentanglement


CURVES = {"curves_figure": lambda h: figures.curves_figure(h, 8), "history_figure": figures.history_figure,
          "sweep_curves_figure": lambda h: figures.sweep_curves_figure(h, 8, "gamma"), "fid_curve": figures.fid_curve,
          "disentanglement_curves": figures.disentanglement_curves}


def iteration_axes(fig) -> list:
    fig.canvas.draw()
    axes = [ax for ax in fig.axes if ax.get_xlabel() == "iteration"]
    assert axes, "no axis of iterations"
    return axes


def visible_ticks(ax) -> list[float]:
    low, high = ax.get_xlim()
    return [t for t in ax.get_xticks() if low <= t <= high]


@pytest.mark.parametrize("name", CURVES)
def test_a_single_evaluation_shows_its_own_iteration_only(name):
    for ax in iteration_axes(CURVES[name]([record(100)])):
        assert visible_ticks(ax) == [100]


@pytest.mark.parametrize("name", CURVES)
def test_iteration_ticks_are_whole_numbers(name):
    for ax in iteration_axes(CURVES[name]([record(0), record(1), record(2)])):
        assert isinstance(ax.xaxis.get_major_locator(), MaxNLocator)
        ticks = visible_ticks(ax)
        assert len(ticks) >= 2 and all(t == round(t) for t in ticks), ticks


def step_panel(history: list[dict]):
    fig = figures.history_figure(history)
    fig.canvas.draw()
    return fig.axes[2]


def test_the_step_panel_says_when_no_evaluation_has_a_stable_step():
    history = [record(0, stable_step=None), record(100, stable_step=None), record(200)]
    del history[2]["stable_step"]
    ax = step_panel(history)
    assert any("no stable step size" in t.get_text() and "non-positive real part" in t.get_text() for t in ax.texts)
    assert "learning rate" not in [line.get_label() for line in ax.get_lines()]
    marks = [line for line in ax.get_lines() if line.get_label() == "no stable step, update"]
    assert [list(line.get_xdata()) for line in marks] == [[0, 100, 200]]


def test_the_step_panel_marks_the_evaluations_without_a_stable_step():
    history = [record(0), record(100, stable_step=None), record(200), record(300)]
    del history[2]["stable_step"]  # SpectrumResult.scalars leaves the key out
    ax = step_panel(history)
    lines = {line.get_label(): list(line.get_xdata()) for line in ax.get_lines()}
    assert lines == {"stable step, update": [0, 300], "no stable step, update": [100, 200],
                     "learning rate": [0, 100, 200, 300]}
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(lines)
    assert not ax.texts


def test_the_step_panel_keeps_the_learning_rate_when_every_evaluation_has_a_stable_step():
    ax = step_panel([record(0), record(100)])
    assert sorted(line.get_label() for line in ax.get_lines()) == ["learning rate", "stable step, update"]
    assert ax.get_yscale() == "log" and not ax.texts


def sweep_rows(**outcomes) -> list[dict]:
    """Two seeds at each of two values of gamma, every member with the same ``outcomes``."""
    return [{"gamma": g, "seed": s, "member": 2 * i + s, "diverged": False, **outcomes}
            for i, g in enumerate((0.1, 1.0)) for s in (0, 1)]


def images(fig):
    fig.canvas.draw()
    return [ax.images[0] for ax in fig.axes if ax.images]


MAP_KEYS = [("modes_covered", "modes covered"), ("high_quality", "high quality (%)"), ("phase_factor", "phase factor")]


def test_an_all_zero_map_keeps_its_colours_in_the_natural_range():
    fig = figures.sweep_map_figure(sweep_rows(modes_covered=0, high_quality=0.0, phase_factor=0.0), "gamma", "seed",
                           MAP_KEYS, "title")
    modes, quality, phase = images(fig)
    assert modes.get_clim() == (0.0, 1.0) and phase.get_clim() == (0.0, 1.0)  # made up, but never below 0
    assert quality.get_clim() == (0.0, 100.0)
    for image in (modes, phase):  # the one value, labelled on its own
        assert [t.get_text() for t in image.colorbar.ax.get_yticklabels()] == ["0"]


def test_the_caller_gives_the_number_of_modes():
    fig = figures.sweep_map_figure(sweep_rows(modes_covered=0, high_quality=0.0), "gamma", "seed", MAP_KEYS[:2], "title",
                           ranges={"modes_covered": (0, 8)})
    assert [image.get_clim() for image in images(fig)] == [(0.0, 8.0), (0.0, 100.0)]


def test_a_quantity_without_a_natural_range_spans_its_data():
    rows = sweep_rows(condition_number=2.0)
    rows[-1]["condition_number"] = 5.0
    (image,) = images(figures.sweep_map_figure(rows, "gamma", "seed", [("condition_number", "condition")], "title"))
    assert image.get_clim() == (2.0, 5.0)
    (image,) = images(figures.sweep_map_figure(sweep_rows(condition_number=3.0), "gamma", "seed",
                                       [("condition_number", "condition")], "title"))
    low, high = image.get_clim()
    assert low < 3.0 < high and np.isclose(low + high, 6.0)
    assert [t.get_text() for t in image.colorbar.ax.get_yticklabels()] == ["3"]


def test_a_constant_map_never_goes_below_a_bound_of_zero():
    assert figures.colour_range(np.array([0.0, np.nan]), (0, None)) == (0.0, 1.0, 0.0)
    assert figures.colour_range(np.array([4.0, 4.0]), (0, None)) == (0.0, 4.0, None)
    assert figures.colour_range(np.array([np.nan]), (0, None))[2] is None


def test_a_cell_without_a_value_is_diverged_only_when_its_members_diverged():
    rows = sweep_rows(modes_covered=1, high_quality=10.0)
    rows[0]["phase_factor"] = 0.5  # gamma 0.1 seed 0: the one spectrum
    rows[3]["diverged"] = True  # gamma 1.0 seed 1
    fig = figures.sweep_map_figure(rows, "gamma", "seed", [("phase_factor", "phase factor")], "title")
    texts = [t.get_text() for t in fig.axes[0].texts]  # by gamma, then by seed
    assert texts == ["0.5", "–", "–", "div."]

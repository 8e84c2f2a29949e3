"""The results of a sweep (``gans.sweep.SweepGAN``) on mixture data: each member's coverage metrics
during training, the table ``sweep.csv`` with one row per member (with the spectra of
``callbacks.SweepSpectra`` when the run has it), and the plots a sweep is run for (every member's
curves; the outcome over the grid of two settings)."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import torch

from callbacks.periodic import PeriodicEvaluation, Plot, Report
from callbacks.sweep_spectra import SweepSpectra
from datamodules.contracts import MixtureData
from figures import sweep_curves_figure, sweep_map_figure
from metrics.mixture import mixture_metrics

#: the outcomes of the table's heat map: (column, title)
MAP_KEYS = [("modes_covered", "modes covered"), ("high_quality", "high quality (%)")]


class SweepMetrics(PeriodicEvaluation):
    """Every ``every_n_steps`` iterations (and at the end), each member's mode coverage and sample
    quality from ``num_samples`` samples (the same latent codes for every member, those of
    ``callbacks.MixtureMetrics`` with the same ``seed``). Writes ``sweep_metrics.jsonl`` (every
    evaluation), ``sweep.csv`` (one row per member: its seed and settings, the last and best
    metrics, whether and when it diverged, and, when the run has a ``callbacks.SweepSpectra``,
    the scalars of the member's last spectrum and its iteration), ``plots/sweep_curves.png`` and,
    when the sweep varies a setting, ``plots/sweep_map.png``: the outcome over the grid of the two
    settings swept (or of the one setting and the seed).
    """

    journal = "sweep_metrics.jsonl"

    def __init__(self, every_n_steps: int = 2000, num_samples: int = 2500, threshold: float = 3.0, seed: int = 1234,
                 plot: bool = True):
        super().__init__(every_n_steps)
        self.num_samples, self.threshold, self.seed, self.plot = num_samples, threshold, seed, plot
        self.rows: list[dict] = []
        self._num_modes, self._setting_names = 0, []

    def measure(self, trainer, pl_module) -> Report:
        data = trainer.datamodule
        if not isinstance(data, MixtureData):
            raise TypeError(f"SweepMetrics needs mixture data (datamodules.MixtureOfGaussians), got {type(data).__name__}")
        samples = pl_module.sample(self.num_samples, torch.Generator().manual_seed(self.seed)).float()
        it, self._num_modes, self._setting_names = trainer.global_step, len(data.modes), list(pl_module.settings[0])
        alive = pl_module.alive.cpu().tolist()
        records = []
        for m in range(pl_module.count):
            values = mixture_metrics(samples[m], data.modes, data.std, self.threshold) if alive[m] else \
                {"modes_covered": 0, "high_quality": 0.0, "kl_uniform": math.log(len(data.modes))}
            data_seed = {"data_seed": pl_module.member_data_hparams[m].get("seed")} if pl_module.own_data else {}
            records.append({"iteration": it, "member": m, "seed": pl_module.seeds[m], **data_seed,
                            **pl_module.settings[m], **values, "diverged": not alive[m]})
        spectra = next((c for c in trainer.callbacks if isinstance(c, SweepSpectra)), None)
        self._update_rows(records, pl_module, spectra.latest if spectra is not None else {})
        live = [r for r in records if not r["diverged"]] or records
        metrics = {"sweep/modes_covered": sum(r["modes_covered"] for r in live) / len(live),
                   "sweep/high_quality": sum(r["high_quality"] for r in live) / len(live),
                   "sweep/all_modes": float(sum(r["modes_covered"] == len(data.modes) for r in live))}
        plots = []
        if self.plot and trainer.is_global_zero:
            label = next(iter(pl_module.settings[0]), None)
            history = [*self.history, *records]
            plots.append(Plot("sweep_curves", "sweep/curves", sweep_curves_figure(history, len(data.modes), label)))
            axes = self.map_axes(pl_module.settings[0])
            if axes is not None:
                keys = MAP_KEYS + ([("phase_factor", "phase factor")] if any("phase_factor" in r for r in self.rows)
                                   else [])
                plots.append(Plot("sweep_map", "sweep/map", sweep_map_figure(
                    self.rows, *axes, keys, f"iteration {it}: mean over members at each point",
                    ranges={"modes_covered": (0, len(data.modes))})))
        return Report(records, metrics, plots)

    @staticmethod
    def map_axes(settings: dict) -> tuple[str, str] | None:
        """The two axes of the heat map: the two settings swept, or the one setting and the seed."""
        names = list(settings)
        if len(names) >= 2:
            return names[0], names[1]
        return (names[0], "seed") if names else None

    def _update_rows(self, records: list[dict], pl_module, spectra: dict[int, dict]) -> None:
        """The table: each member's last evaluation, its best coverage and quality so far, the
        iteration it diverged at (or reached), and its last spectrum's scalars (``spectra``)."""
        best = {m: (r["best_modes_covered"], r["best_high_quality"]) for m, r in enumerate(self.rows)}
        self.rows = []
        for r in records:
            m = r["member"]
            old = best.get(m, (0, 0.0))
            self.rows.append({**{k: v for k, v in r.items() if k != "iteration"},
                              "best_modes_covered": max(old[0], r["modes_covered"]),
                              "best_high_quality": max(old[1], r["high_quality"]),
                              "iteration": pl_module.diverged_at.get(m, r["iteration"]), **spectra.get(m, {})})

    def write(self, trainer, run_dir: Path, report: Report) -> None:
        super().write(trainer, run_dir, report)
        if self.rows:
            columns = list(dict.fromkeys(k for row in self.rows for k in row))
            with open(run_dir / "sweep.csv", "w", newline="") as f:
                writer = csv.DictWriter(f, columns)
                writer.writeheader()
                writer.writerows(self.rows)

    def summary(self) -> str | None:
        """The sweep's outcome in one line (train.py prints it when training ends)."""
        if not self.rows:
            return None
        full = sum(r["modes_covered"] == self._num_modes and not r["diverged"] for r in self.rows)
        diverged = [str(r["member"]) for r in self.rows if r["diverged"]]
        best = max(self.rows, key=lambda r: (not r["diverged"], r["modes_covered"], r["high_quality"]))
        settings = ", ".join(f"{k}={best[k]:g}" for k in self._setting_names)
        return (f"{len(self.rows)} members: {full} cover all {self._num_modes} modes, "
                f"{len(diverged)} diverged{' (' + ', '.join(diverged) + ')' if diverged else ''}; best member "
                f"{best['member']} (seed {best['seed']}{', ' + settings if settings else ''}): "
                f"{best['modes_covered']}/{self._num_modes} modes, {best['high_quality']:.1f}% high quality")

    def state_dict(self) -> dict:
        return {**super().state_dict(), "rows": self.rows}

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self.rows = list(state_dict.get("rows", []))


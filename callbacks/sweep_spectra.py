"""The Jacobian spectra of a sweep's members (``gans.sweep.SweepGAN``), at the cadence of the run's
spectrum callback: each member's spectrum is the one its single run's ``JacobianSpectrum`` gives
at the same iterations."""
from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

from callbacks.periodic import PeriodicEvaluation, Report
from callbacks.progress import progress
from datamodules.contracts import RealSamples
from spectra.spectrum import SpectrumSettings, evaluate_spectra


def check_form(spectra) -> None:
    """Raise unless ``spectra`` is ``all`` or a list of member indices."""
    if not (spectra == "all" or (isinstance(spectra, (list, tuple)) and all(
            isinstance(m, int) and not isinstance(m, bool) for m in spectra))):
        raise ValueError(f"spectra takes all or a list of member indices (such as [0, 3]), got {spectra!r}")


def chosen_members(spectra: Literal["all"] | Sequence[int], count: int) -> list[int]:
    """The members ``spectra`` names (``all`` or indices); raises for an index the sweep does not have."""
    check_form(spectra)
    chosen = list(range(count)) if spectra == "all" else list(spectra)
    wrong = [m for m in chosen if not 0 <= m < count]
    if wrong:
        raise ValueError(f"spectra: the sweep has members 0 to {count - 1}, not {', '.join(map(str, wrong))}")
    return chosen


class SweepSpectra(PeriodicEvaluation):
    """Before the first iteration and every ``every_n_steps`` iterations, the spectra of the members
    in ``spectra`` (``all`` or indices), each of the member's own model (``member_model``) with
    ``spectrum``'s settings (``spectra.spectrum.evaluate_spectra``; the run's ``JacobianSpectrum``
    settings, its cadence and seed included, so a member's spectrum equals its single run's and
    the offline command's). A diverged member is left out. Writes ``sweep_spectra.jsonl`` (a record
    per member and field), ``spectra/sweep_<iteration>.npz`` (``member<m>_<field>_eigenvalues`` and
    its scalars) and logs the mean phase factor of the living members; ``latest`` holds each
    member's last scalars of the first field (the columns ``SweepMetrics`` adds to ``sweep.csv``).

    Args:
        lr: the step size of the scalars ``contraction`` and ``stable_step`` compare with (default:
            each member's generator learning rate).
    """

    journal = "sweep_spectra.jsonl"

    def __init__(self, spectra: Literal["all"] | Sequence[int] = "all", every_n_steps: int = 1000,
                 spectrum: SpectrumSettings | None = None, lr: float | None = None, progress: bool = True):
        super().__init__(every_n_steps, at_start=True, at_end=False)
        check_form(spectra)  # the indices are checked once the sweep's size is known
        self.spectra, self.lr, self.progress = spectra, lr, progress
        self.spectrum = spectrum if spectrum is not None else SpectrumSettings(field="update")
        self.latest: dict[int, dict] = {}

    def measure(self, trainer, pl_module) -> Report:
        data = trainer.datamodule
        if not isinstance(data, RealSamples):
            raise TypeError(f"SweepSpectra needs a datamodule with eval_samples(n), got {type(data).__name__}")
        settings, it = self.spectrum, trainer.global_step
        real = data.eval_samples(settings.batch_size * settings.num_batches)
        alive = pl_module.alive.cpu().tolist()
        records, arrays = [], {"iteration": it}
        for m in chosen_members(self.spectra, pl_module.count):
            if not alive[m]:
                continue
            model = pl_module.member_model(m).to(pl_module.device)
            lr = self.lr if self.lr is not None else model.learning_rates()[0]
            evaluated = evaluate_spectra(
                model, real, settings, rank=trainer.global_rank, world=trainer.world_size,
                progress=lambda what, total: progress(trainer, f"member {m}: {what}", total, "products",
                                                      enabled=self.progress))
            for i, (name, (result, seconds)) in enumerate(evaluated.items()):
                # stable_step stays a column when no step size contracts (empty there), as the docs list it
                scalars = {"stable_step": None, **result.scalars(lr), "products": float(result.products),
                           "seconds": seconds}
                records.append({"iteration": it, "member": m, "field": name, "lr": lr, **scalars})
                arrays[f"member{m}_{name}_eigenvalues"] = result.eigenvalues
                arrays.update({f"member{m}_{name}_{k}": np.float64(np.nan if v is None else v)
                               for k, v in scalars.items()})
                if i == 0:
                    self.latest[m] = {**{k: v for k, v in scalars.items() if k not in ("products", "seconds")},
                                      "spectrum_iteration": it}
        phases = [r["phase_factor"] for r in records if r["field"] == self.spectrum.fields[0]]
        metrics = {"sweep/phase_factor": float(np.mean(phases))} if phases else {}
        return Report(records, metrics, [], (f"spectra/sweep_{it:06d}", arrays) if records else None)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "latest": {str(m): v for m, v in self.latest.items()}}

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self.latest = {int(m): dict(v) for m, v in state_dict.get("latest", {}).items()}

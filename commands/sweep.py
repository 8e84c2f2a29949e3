"""``--sweep.*`` options of ``train.py``: many games in one run (``gans.sweep.SweepGAN``).

    python train.py --model jare --sweep.seeds 16 --sweep.gamma [10,100,1000]   # 48 members
    python train.py --model vanilla --sweep.seeds 8 --sweep.lr [1e-4,1e-3]

``--sweep.seeds N`` trains the seeds S, ..., S + N - 1 of ``--seed_everything S``; ``--sweep.NAME
[values]`` sweeps any numeric option of the method (``gamma``, ``lam``, ``eta``, ``extrapolation``,
...), ``--sweep.lr`` the learning rate. Every combination of the settings is
trained with every seed; member i is built exactly as its single run (``train.py`` with that
seed and those options) builds its model. ``--sweep.data_seeds true`` gives each member a data stream of its own
too: member i's data seed is the data's seed plus i (its single run then has ``--data.seed D+i``;
by default every member trains on the same batches, as every single run with the preset's data
seed does). ``--sweep.spectra all`` (or ``[0,3]``) computes each chosen member's Jacobian spectrum
with the settings and at the cadence of the config's ``callbacks.JacobianSpectrum``.
"""
from __future__ import annotations

import copy
import functools
import itertools
from pathlib import Path

import pytorch_lightning as pl
import yaml
from pytorch_lightning.utilities import rank_zero_info

from callbacks.jacobian_spectrum import JacobianSpectrum
from callbacks.mixture_metrics import MixtureMetrics
from callbacks.sweep_metrics import SweepMetrics
from callbacks.sweep_spectra import SweepSpectra, chosen_members
from commands.errors import fail
from datamodules.stacked import StackedData
from gans.checkpoint import record_object_arguments
from gans.sweep import SweepGAN

PREFIX = "--sweep."
#: options of the sweep itself; every other ``--sweep.NAME`` is a setting to sweep
OWN_OPTIONS = ("seeds", "spectra", "data_seeds")
#: the sweep's options, for ``train.py --help``
SWEEP_HELP = ("--sweep.seeds N, --sweep.NAME [v1,v2,...] (any numeric option of the method, or lr), "
              "--sweep.data_seeds true, --sweep.spectra all|[i,...]: many games in one run (docs/sweeps.md)")


def split_sweep_options(args: list[str]) -> tuple[dict, list[str]]:
    """The ``--sweep.NAME VALUE`` (or ``--sweep.NAME=VALUE``) options, parsed as YAML, and the
    remaining arguments."""
    spec, rest, i = {}, [], 0
    while i < len(args):
        arg = args[i]
        if arg.startswith(PREFIX):
            name, _, value = arg[len(PREFIX):].partition("=")
            if not _:
                if i + 1 >= len(args):
                    raise fail(f"{arg} needs a value (such as {arg} [1, 10, 100])")
                value, i = args[i + 1], i + 1
            try:
                spec[name] = yaml.safe_load(value)
            except yaml.YAMLError:
                raise fail(f"{PREFIX}{name}: {value!r} is not a value or a list of values") from None
        else:
            rest.append(arg)
        i += 1
    return spec, rest


def settings_grid(spec: dict) -> list[dict]:
    """Every combination of the swept settings (in the order given), as dicts."""
    swept = {k: v for k, v in spec.items() if k not in OWN_OPTIONS}
    for name, values in swept.items():
        values = [number(v) for v in (values if isinstance(values, list) else [values])]
        if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise fail(f"{PREFIX}{name} takes a list of numbers (such as {PREFIX}{name} [1, 10, 100]), got {values!r}")
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise fail(f"{PREFIX}{name} lists {', '.join(f'{v:g}' for v in repeated)} more than once: the same member "
                       f"would train twice; give each value once (--sweep.seeds N repeats a setting over seeds)")
        swept[name] = [float(v) for v in values]
    return [dict(zip(swept, combo)) for combo in itertools.product(*swept.values())]


def number(value):
    """A YAML value as a number where it is one (YAML 1.1 reads 1e-3, without a dot, as a string)."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def setting_key(config, name: str) -> str:
    """Where setting ``name`` lives in the config: the learning rate or an option of the method (what
    members may differ in, ``gans.sweep.SETTINGS``); a setting the members share is refused by name."""
    if name == "lr":
        return "model.init_args.optimizer.init_args.lr"
    model_args = config["model"]["init_args"]
    method = model_args.get("method")
    method_args = getattr(method, "init_args", None) or {}
    if name in method_args:
        return f"model.init_args.method.init_args.{name}"
    options = sorted(k for k, v in method_args.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
    if name in model_args:
        raise fail(f"{PREFIX}{name}: {name} is a setting every member of a sweep shares (gans.sweep.SETTINGS); "
                   f"a sweep varies the learning rate and the method's options ({', '.join(['lr', *options])}): "
                   f"train a run per value of {name}")
    raise fail(f"{PREFIX}{name}: the model has no option {name!r}; numeric options it can sweep: "
               f"{', '.join(['lr', *options])}")


def seed_count(spec: dict) -> int:
    seeds = spec.get("seeds", 1)
    if not (isinstance(seeds, int) and not isinstance(seeds, bool) and seeds >= 1):
        raise fail(f"{PREFIX}seeds takes the number of seeds, a positive integer, got {seeds!r}")
    return seeds


def base_seed_of(config) -> int:
    """The run's seed (``seed_everything``), the first member's."""
    seed = config.get("seed_everything")
    return 0 if seed in (None, True, False) else int(seed)


def sweep_members(config, spec: dict) -> tuple[list[int], list[dict]]:
    """Each member's seed and swept settings, in member order (every setting with every seed)."""
    seeds, base = seed_count(spec), base_seed_of(config)
    grid = settings_grid(spec)
    return [base + offset for _ in grid for offset in range(seeds)], [dict(c) for c in grid for _ in range(seeds)]


def sweep_config(spec: dict) -> str:
    """The ``--sweep.*`` options as a YAML section, printed after ``--print_config``'s config."""
    return ("# the sweep (--sweep.*): each member trains the config above with its own seed and settings\n"
            + yaml.safe_dump({"sweep": spec}, sort_keys=False, default_flow_style=None))


def build_sweep(cli, spec: dict) -> tuple[SweepGAN, StackedData | None]:
    """The members, each built as its single run builds its model (its seed, then the parser's
    instantiation of its config), stacked into a ``SweepGAN``; with ``data_seeds``, the members'
    own datamodules stacked (else None: the run's datamodule serves every member)."""
    seeds = seed_count(spec)
    grid = settings_grid(spec)
    base_seed = base_seed_of(cli.config)
    own_data = spec.get("data_seeds", False)
    if own_data not in (True, False):
        raise fail(f"{PREFIX}data_seeds takes true or false, got {own_data!r}")
    data_seed = cli.config.get("data.init_args.seed") if own_data else None
    if own_data and not isinstance(data_seed, int):
        raise fail(f"{PREFIX}data_seeds needs a datamodule with an integer seed option (data.init_args.seed), "
                   f"got {data_seed!r}")
    keys = {name: setting_key(cli.config, name) for name in grid[0]}
    if own_data:
        keys["data_seed"] = "data.init_args.seed"
    # Lightning's instantiator records a model's (and datamodule's) hyperparameters from the
    # command line's dump of its config (``cli.config_dump``): each member's instantiation sees its own
    dumped = run_dump = cli.config_dump
    members, member_seeds, settings, hparams, datas = [], [], [], [], []
    for combo in grid:
        for offset in range(seeds):
            config, recorded = cli.config.clone(), copy.deepcopy(dumped)
            config["seed_everything"] = recorded["seed_everything"] = base_seed + offset
            values = {**combo, **({"data_seed": data_seed + offset} if own_data else {})}
            for name, value in values.items():
                config[keys[name]] = value
                *path, last = keys[name].split(".")
                functools.reduce(dict.__getitem__, path, recorded)[last] = value
            pl.seed_everything(base_seed + offset, workers=True, verbose=False)
            cli.config_dump = recorded
            try:
                built = cli.parser.instantiate_classes(config)
            finally:
                cli.config_dump = run_dump
            model = built["model"]
            datas.append(built["data"])
            record_object_arguments(model, recorded["model"])
            members.append(model)
            member_seeds.append(base_seed + offset)
            settings.append(dict(combo))
            hparams.append(dict(model.hparams))
    pl.seed_everything(base_seed, workers=True, verbose=False)  # what follows draws as the run of seed S does
    data_hparams = [dict(d.hparams_initial) for d in datas] if own_data else None
    try:
        return SweepGAN(members, member_seeds, settings, hparams, data_hparams), StackedData(datas) if own_data else None
    except ValueError as err:
        raise fail(str(err)) from None


def sweep_callbacks(trainer: pl.Trainer, spec: dict, model: SweepGAN) -> None:
    """The single run's coverage metrics become each member's (``SweepMetrics``, same cadence and
    samples); with ``--sweep.spectra``, its spectrum callback becomes the chosen members'
    (``SweepSpectra``: the same cadence, iteration 0 included, and the same ``SpectrumSettings``,
    seed included). A spectrum option a member's spectrum cannot honour is refused by name."""
    spectrum = next((c for c in trainer.callbacks if isinstance(c, JacobianSpectrum)), None)
    metrics = next((c for c in trainer.callbacks if isinstance(c, MixtureMetrics)), None)
    options = {}
    if metrics is not None:
        options = {"every_n_steps": metrics.every_n_steps, "num_samples": metrics.num_samples,
                   "threshold": metrics.threshold, "seed": metrics.seed, "plot": metrics.plot}
    added = [SweepMetrics(**options)]
    chosen = spec.get("spectra")
    if chosen is not None:
        chosen = chosen if chosen == "all" or isinstance(chosen, list) else [chosen]
        spectrum_options = {"every_n_steps": options.get("every_n_steps", 2000)}
        if spectrum is not None:
            for name in ("preconditioned", "warm_start"):
                if getattr(spectrum, name):
                    raise fail(f"{PREFIX}spectra: the spectrum callback's {name}=true is not available for sweep "
                               f"members (each member's spectrum is a search of its own model); drop "
                               f"--trainer.callbacks.{name} or compute it offline on an exported member "
                               f"(python -m commands.member, then python -m commands.spectrum)")
            spectrum_options = {"every_n_steps": spectrum.every_n_steps, "spectrum": spectrum.settings,
                                "lr": spectrum.lr, "progress": spectrum.progress}
        try:  # the option is checked now, before anything is trained or written
            spectra = SweepSpectra(chosen, **spectrum_options)
            chosen_members(chosen, model.count)
        except ValueError as err:
            raise fail(f"{PREFIX}{err}") from None
        added.insert(0, spectra)  # before the table, which takes each member's latest spectrum
    elif spectrum is not None:
        rank_zero_info("the sweep leaves out callbacks.JacobianSpectrum: each member's spectrum is a search of its "
                       "own; --sweep.spectra all (or [i,...]) computes the chosen members' at its cadence")
    trainer.callbacks[:] = [c for c in trainer.callbacks if not isinstance(c, (JacobianSpectrum, MixtureMetrics))]
    trainer.callbacks.extend(added)
    trainer.callbacks.append(RecordSweep(spec))


class RecordSweep(pl.Callback):
    """Writes the ``--sweep.*`` options to ``sweep.yaml`` in the run folder, beside ``config.yaml``
    (the config of member 0's single run): the two are the whole recipe of the run."""

    def __init__(self, spec: dict):
        self.spec = spec

    def on_fit_start(self, trainer, pl_module) -> None:
        folder = trainer.log_dir
        if trainer.is_global_zero and folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            (Path(folder) / "sweep.yaml").write_text(yaml.safe_dump({"sweep": self.spec}, sort_keys=False))

"""Train a GAN from the command line (``python train.py ...`` or ``python -m commands.train ...``).

    python train.py --model jare                      # configs/base.yaml, data/ring.yaml, models/jare.yaml
    python train.py --model vanilla --model.update alternating --data.kind grid --trainer.max_steps 2000
    python train.py --model jare --data digits        # images: data/digits.yaml instead of data/ring.yaml
    python train.py --model jare --paper jare_ring --model.method.gamma 1000   # + papers/jare_ring.yaml
    python train.py --config my.yaml                  # a full config of your own
    python train.py --model jare --print_config       # the resolved config, every option
    python train.py --model jare --ckpt_path last     # resume the newest run of that logger folder

Configs are layers (``commands.layers``): the base, a data preset (data, networks, optimizer,
metrics), the model (its method and weights) and a paper's setting, each overriding the one
before, then the command line. ``--model gans.JARE`` (a class path) or a ``--config`` works as in
any LightningCLI program. Budgets and cadences (``max_steps``, ``log_every_n_steps``, checkpoint
``every_n_train_steps``) count iterations: one update of both players.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import pydoc
import shutil
import sys
import warnings
from argparse import ArgumentError
from pathlib import Path

import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.callbacks.progress import ProgressBar
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.plugins import TorchCheckpointIO
from pytorch_lightning.utilities import rank_zero_info
from rich.console import Console
from rich.table import Table

import gans.strategy  # noqa: F401 (registers --trainer.strategy game_ddp and game_ddp_spawn)
import mkl_on_amd  # enabled by the commands package, before torch
from callbacks.checkpoint import FinalCheckpoint
from callbacks.interrupt import Interruption, interruption
from callbacks.progress import IterationProgressBar
from commands.errors import DEBUG_ENV, USER_ERRORS, class_options, fail, one_line, short_error, yaml_problem
from commands.layers import DEFAULT_DATA, DEFAULT_MODEL, expand_model_name, layer, names
from commands.sweep import SWEEP_HELP, build_sweep, split_sweep_options, sweep_callbacks, sweep_config, sweep_members
from gans import TwoPlayerGAN, current_path
from gans.checkpoint import AtomicCheckpointIO, model_class_path, record_object_arguments
from runtime.checkpoint import CheckpointError, changed_settings, iteration, read_checkpoint
from runtime.precision import set_tf32
from runtime.threads import choose_threads


class GanCLI(LightningCLI):
    """LightningCLI with the run's options (``--ckpt_path``, ``--threads``, ``--tf32``), the run
    folder's placement and the resume checks. ``sweep``: the ``--sweep.*`` options (a resume must
    match them); ``place_given``: the logger settings the user's own command line gives
    (``save_dir``, ``name``, ``version``, ``default_root_dir``): a resume from a path whose run
    lies elsewhere then writes where they say instead of continuing in the checkpoint's run folder."""

    def __init__(self, *args, sweep: dict | None = None, place_given: set[str] = frozenset(), **kwargs):
        self.sweep_spec, self.place_given = sweep or {}, set(place_given)
        self.resumed_from: Path | None = None  # the run folder a resume into another place came from
        self.resume_step = 0  # the iteration a resume starts from (a failure before it trains leaves nothing)
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--ckpt_path", type=str | None, default=None,
                            help="checkpoint to resume from: a path, or 'last' for the newest run of the logger folder")
        parser.add_argument("--threads", type=int | None, default=None,
                            help="compute threads per training process (default: the cores this process may use, "
                                 "shared among the run's processes on this machine, less those other processes keep "
                                 "busy)")
        parser.add_argument("--tf32", type=bool, default=False,
                            help="allow TF32 (10-bit mantissa) float32 matrix products and convolutions on NVIDIA "
                                 "GPUs for the first-order training step; second-order methods, spectra and FID "
                                 "always run in full float32 (runtime.precision)")

    def parse_arguments(self, parser, args) -> None:
        self.run_name = run_name(args)
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as err:
            raise fail(yaml_problem(args) or short_error(err, parser)) from None

    def before_instantiate_classes(self) -> None:
        trainer = self.config["trainer"]
        check_batch_size(self.config.get("data"))
        set_threads(self.config.get("threads"), trainer)
        set_tf32(bool(self.config.get("tf32")))
        ckpt_path = self.config.get("ckpt_path")
        if ckpt_path not in (None, "last", *LIGHTNING_CKPT_NAMES):
            # everything about the checkpoint is checked before a folder is chosen or anything written
            step = check_resume(ckpt_path, yaml.safe_load(self.parser.dump(self.config)), self.sweep_spec)
        place_run_folder(trainer, self.run_name or self.config["model"]["class_path"].rsplit(".", 1)[-1].lower())
        if ckpt_path == "last":
            self.config["ckpt_path"] = ckpt_path = resume_in_place(trainer)
            step = check_resume(ckpt_path, yaml.safe_load(self.parser.dump(self.config)), self.sweep_spec)
        if ckpt_path not in (None, *LIGHTNING_CKPT_NAMES):
            self.resume_step = step
            placed, self.resumed_from = resume_from_path(trainer, ckpt_path, self.place_given)
            # the run folder's config.yaml is the record of how the run started: a resume writes its own,
            # except in a new folder of a checkpoint that came without one (its config is the only record)
            self.save_config_kwargs["config_filename"] = "config.yaml" if placed == "loose" else \
                f"config_resumed_{step}.yaml"
        slurm_run_folder(trainer)

    def after_instantiate_classes(self) -> None:
        record_object_arguments(self.model, self.config_dump["model"])  # the config the model was built from
        if type(self.trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # a checkpoint_io of the user's stays
            self.trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        self.trainer.callbacks.append(FinalCheckpoint())
        bar = self.trainer.progress_bar_callback
        if bar is not None and not configured(self.config["trainer"], ProgressBar):
            # Lightning's default bar counts the batches of an epoch: count the run's iterations
            self.trainer.callbacks[self.trainer.callbacks.index(bar)] = IterationProgressBar()


def chosen_model(args: list[str]) -> str | None:
    """The NAME of ``--model NAME`` (or a class path) on a command line, None when not given."""
    for i, arg in enumerate(args):
        if arg == "--model" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--model="):
            return arg.split("=", 1)[1]
    return None


def model_help_request(args: list[str]) -> str | None:
    """The model NAME of ``--model.help NAME`` (a name of configs/models/, which jsonargparse's help
    would reject: it takes class paths), None otherwise."""
    for i, arg in enumerate(args):
        value = args[i + 1] if arg == "--model.help" and i + 1 < len(args) else \
            arg.split("=", 1)[1] if arg.startswith("--model.help=") else None
        if value is not None and "." not in value:
            if value not in names("--model"):
                raise fail(f"--model.help {value}: unknown model; choose one of: {', '.join(names('--model'))} (or "
                           f"a class path such as gans.TwoPlayerGAN)")
            return value
    return None


def model_options(name: str | None) -> str:
    """What ``--model NAME`` trains and the options it takes, in a few lines (``--help``,
    ``--model.help NAME``)."""
    name = name or DEFAULT_MODEL
    if name not in names("--model"):
        return f"--model {name}: options with --model.help {name}"
    model = {}
    for path in layer("--model", name):  # later files override earlier ones
        section = (yaml.safe_load(path.read_text()) or {}).get("model") or {}
        model.update({k: v for k, v in section.items() if k != "init_args"})
        model.setdefault("init_args", {}).update(section.get("init_args") or {})
    class_path = model.get("class_path", "gans.TwoPlayerGAN")
    method = (model["init_args"].get("method") or {}).get("class_path")
    lines = [f"--model {name} trains {class_path}" + (f" with the method {method}" if method else "")
             + f"; its options (--model.NAME VALUE): {', '.join(class_options(class_path))}"]
    if method:
        lines.append(f"the method's options (--model.method.NAME VALUE): {', '.join(class_options(method))}")
    return "\n".join(lines)


def check_batch_size(data_config) -> None:
    """A batch size that is not a positive integer, in one line before anything is built."""
    init = getattr(data_config, "init_args", None)
    size = getattr(init, "batch_size", 1) if init is not None else 1
    if not (isinstance(size, int) and size >= 1):
        raise fail(f"--data.batch_size must be a positive integer (samples per batch and process), got {size!r}")


def set_threads(requested: int | None, trainer_config) -> None:
    """Each process's compute threads (``runtime.threads.choose_threads``); the environment carries the
    number to launched processes and keeps Lightning's own per-process default out."""
    devices = trainer_config.get("devices")
    local = devices if isinstance(devices, int) and devices > 0 else len(devices) if isinstance(devices, list) else 1
    try:
        threads, note = choose_threads(requested, local)
    except ValueError as err:
        raise fail(str(err)) from None
    if note:
        rank_zero_info(note)
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)


def configured(trainer_config, base: type) -> bool:
    """Whether the config's callbacks include one of class ``base``."""
    return any(issubclass(pydoc.locate(c.class_path), base) for c in trainer_config.get("callbacks") or [])


#: ``--ckpt_path`` values Lightning resolves itself (SLURM's "hpc" checkpoint, ...)
LIGHTNING_CKPT_NAMES = ("hpc", "best", "registry")


NAME_OPTION = "--trainer.logger.init_args.name"


def run_name(args: list[str]) -> str | None:
    """The logger name the command line gives (the layers' ``<model>[_<data>][_<paper>]``, or the
    user's own ``--trainer.logger.init_args.name``: the last one wins, as in the parser)."""
    name = None
    for i, arg in enumerate(args):
        if arg == NAME_OPTION and i + 1 < len(args):
            name = args[i + 1]
        elif arg.startswith(NAME_OPTION + "="):
            name = arg.split("=", 1)[1]
    return name


def launched_rank() -> int:
    """This process's rank from the launcher's environment: torchrun's ``RANK``, a Lightning-started
    process's ``LOCAL_RANK``, srun's ``SLURM_PROCID``; 0 in the process the user started."""
    for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def slurm_job() -> str | None:
    """The SLURM job (``<job>`` or ``<array job>_<task>``) this process runs in, None outside SLURM."""
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID', '0')}"
    return os.environ.get("SLURM_JOB_ID") or None


def place_run_folder(trainer_config, name: str) -> None:
    """Where the run folder goes. ``--trainer.default_root_dir DIR`` is the root of a relative logger
    ``save_dir`` (the presets' ``runs``): the run folder is then ``DIR/runs/<name>/version_<N>``.
    Without a logger (``--trainer.logger false``) a run gets a folder of its own,
    ``runs/<name>/version_<N>`` (or DIR), instead of writing into the current folder."""
    root = trainer_config.get("default_root_dir")
    logger = trainer_config.get("logger")
    init = getattr(logger, "init_args", None)
    if root is not None and init is not None and "save_dir" in init and not Path(init.save_dir).is_absolute():
        init.save_dir = str(Path(root) / init.save_dir)
    if logger in (False, None) and root is None:
        # launched processes (game_ddp's popen) inherit the folder rank 0 chose; rank 0 chooses anew
        # on every run, also a second one in the same Python process. srun starts every process
        # itself: the job's id names the folder, the same on every process (and after a requeue).
        inherited = os.environ.get(RUN_FOLDER_ENV) if launched_rank() > 0 else None
        job = slurm_job()
        folder = inherited or str(Path("runs") / name / f"slurm_{job}" if job else next_version_folder(Path("runs") / name))
        os.environ[RUN_FOLDER_ENV] = trainer_config["default_root_dir"] = folder


RUN_FOLDER_ENV = "GAN_DYNAMICS_RUN_FOLDER"


def next_version_folder(parent: Path) -> Path:
    taken = [int(p.name.split("_")[-1]) for p in parent.glob("version_*") if p.name.split("_")[-1].isdigit()]
    return parent / f"version_{max(taken, default=-1) + 1}"


def check_resume(ckpt_path: str, config: dict, sweep: dict | None = None) -> int:
    """Refuse, in one line, a resume that would not continue the run: an unreadable checkpoint, one
    of another model, a sweep's without its ``--sweep.*`` options (or with other members) or a
    single run's with them, changed model or data settings (they would be silently replaced by the
    checkpoint's), or nothing left to train. Returns the checkpoint's iteration."""
    try:
        checkpoint = read_checkpoint(ckpt_path)
    except CheckpointError as err:
        raise fail(str(err)) from None
    step = iteration(checkpoint)
    run_config = Path(ckpt_path).resolve().parent.parent / "config.yaml"
    own = f"resume with its own config (--config {run_config})" if run_config.is_file() else "resume with its settings"
    check_sweep_resume(ckpt_path, checkpoint, config, sweep or {})
    recorded = model_class_path(checkpoint)
    if recorded is not None:
        method = (config["model"].get("init_args") or {}).get("method")
        method = method.get("class_path") if method else None
        ours = model_and_method(config["model"]["class_path"], method)
        theirs = model_and_method(recorded, current_path(checkpoint["method"]) if checkpoint.get("method") else None)
        if theirs != ours:
            raise fail(f"--ckpt_path {ckpt_path} was written by {theirs}, not {ours}: {own}")
    data_recorded = checkpoint.get("datamodule_hyper_parameters", {}).get("_class_path")
    data_now = (config.get("data") or {}).get("class_path")
    if data_recorded is not None and data_now is not None and data_recorded != data_now:
        raise fail(f"--ckpt_path {ckpt_path} was trained on {data_recorded}, not {data_now}: {own}")
    changed = [] if recorded is None else changed_settings(checkpoint.get("hyper_parameters", {}), config["model"], "model")
    changed += changed_settings(checkpoint.get("datamodule_hyper_parameters", {}), config.get("data") or {}, "data")
    if changed:
        raise fail(f"--ckpt_path {ckpt_path} was written with other settings ({'; '.join(changed)}); a resume continues "
                   f"the run as it was: {own}, or start a new run without --ckpt_path")
    max_steps = config["trainer"].get("max_steps") or -1
    if 0 < max_steps <= step:
        raise fail(f"nothing to train: --ckpt_path {ckpt_path} is at iteration {step} and --trainer.max_steps is "
                   f"{max_steps}; raise --trainer.max_steps to continue the run")
    return step


def model_and_method(class_path: str, method: str | None) -> str:
    """A model's class path, with its method's when it has one (``gans.TwoPlayerGAN with
    game.methods.JacobianRegularization``)."""
    return f"{class_path} with {method}" if method and class_path == "gans.TwoPlayerGAN" else class_path


def check_sweep_resume(ckpt_path: str, checkpoint: dict, config: dict, spec: dict) -> None:
    """A sweep's checkpoint resumes only with its own ``--sweep.*`` options (the same members), a
    single run's only without any."""
    recorded = checkpoint.get("sweep")
    if recorded is None and spec:
        raise fail(f"--ckpt_path {ckpt_path} is a single run's checkpoint, not a sweep's: resume it without the "
                   f"--sweep options (or export a sweep's member first: python -m commands.member)")
    if recorded is None:
        return
    options = sweep_options(Path(ckpt_path).resolve().parent.parent / "sweep.yaml")
    if not spec:
        raise fail(f"--ckpt_path {ckpt_path} is the checkpoint of a sweep of {len(recorded['seeds'])} members: resume "
                   f"it with its sweep options{' (' + options + ')' if options else ''}, or export one member as an "
                   f"ordinary checkpoint with python -m commands.member {ckpt_path} M")
    seeds, settings = sweep_members(config, spec)
    if list(recorded["seeds"]) != seeds or recorded["settings"] != settings:
        raise fail(f"--ckpt_path {ckpt_path} is a sweep of other members (seeds {list(recorded['seeds'])}, settings "
                   f"{recorded['settings']}) than these options give (seeds {seeds}, settings {settings}): resume it with "
                   f"its own sweep options{' (' + options + ')' if options else ''}")


def sweep_options(path: Path) -> str:
    """A run folder's ``sweep.yaml`` as command-line options (empty when it has none)."""
    try:
        spec = yaml.safe_load(path.read_text()).get("sweep", {})
    except (OSError, AttributeError, yaml.YAMLError):
        return ""
    return " ".join(f"--sweep.{k} {json.dumps(v).replace(' ', '')}" for k, v in spec.items())


def resume_in_place(trainer_config) -> str:
    """For ``--ckpt_path last``: point the logger at the newest version folder holding a
    ``checkpoints/last.ckpt``, so the resumed run continues in that folder, and return the file."""
    logger = trainer_config.get("logger")
    init = getattr(logger, "init_args", None)
    if init is None:
        raise fail("--ckpt_path last needs a logger with save_dir and name (TensorBoardLogger or CSVLogger)")
    root = Path(init.save_dir) / (init.name or "")
    versions = sorted((int(p.parent.parent.name.split("_")[-1]), p) for p in root.glob("version_*/checkpoints/last.ckpt"))
    if not versions:
        raise fail(f"--ckpt_path last: no {root}/version_*/checkpoints/last.ckpt to resume from")
    init.version = versions[-1][0]
    return str(versions[-1][1])


def resume_from_path(trainer_config, ckpt_path: str, place_given: set[str]) -> tuple[str, Path | None]:
    """Where a resume from ``ckpt_path`` writes: (``in place`` | ``elsewhere`` | ``loose``, the run
    folder whose records the new folder receives). A checkpoint in a run folder
    (``<run>/checkpoints/X.ckpt`` beside ``<run>/config.yaml``) continues in that folder, as
    ``--ckpt_path last`` does, unless the logger settings the command line gives (``place_given``)
    name another place: then the run gets a new folder there, which receives the original run's
    records (``copy_run_records``). A checkpoint outside a run folder starts a new one."""
    ckpt = Path(ckpt_path).resolve()
    run = ckpt.parent.parent
    if ckpt.parent.name != "checkpoints" or not (run / "config.yaml").is_file():
        rank_zero_info(f"resume: {ckpt_path} is not in a run folder (no config.yaml beside its checkpoints/ folder): "
                       f"the resumed run writes a new run folder")
        return "loose", None
    logger = trainer_config.get("logger")
    init = getattr(logger, "init_args", None)
    elsewhere = [f"--trainer.logger.init_args.{key}" for key in ("save_dir", "name", "version")
                 if key in place_given and init is not None and not _names_run(init, key, run)]
    if "default_root_dir" in place_given and init is None and \
            Path(trainer_config.get("default_root_dir") or ".").resolve() != run:
        elsewhere.append("--trainer.default_root_dir")
    if elsewhere:
        rank_zero_info(f"resume: {', '.join(elsewhere)} name(s) another place than {run}, so the resumed run writes a "
                       f"new run folder there, starting with that run's records (configs, metrics, plots, events)")
        return "elsewhere", run
    if init is not None and "save_dir" in init:
        # the folder spelled as the run spelled it (relative where it was), so that Lightning reloads
        # its checkpoint callback's state (it compares the paths as strings)
        root = run.parent.parent
        if Path(init.save_dir).resolve() != root:
            relative = os.path.relpath(root)
            init.save_dir = relative if not relative.startswith("..") else str(root)
        init.name, init.version = run.parent.name, run.name
    elif logger in (False, None):
        trainer_config["default_root_dir"] = str(run)
    return "in place", None


def _names_run(init, key: str, run: Path) -> bool:
    """Whether the logger setting ``key`` agrees with the run folder ``run`` (save_dir/name/version)."""
    value = getattr(init, key, None) if not isinstance(init, dict) else init.get(key)
    if key == "save_dir":
        return Path(str(value)).resolve() == run.parent.parent
    if key == "name":
        return value == run.parent.name
    return value is None or str(value) in (run.name, run.name.removeprefix("version_"))


#: what a run folder holds besides its checkpoints: the records a resume into a new folder copies
RUN_RECORDS = ("*.yaml", "*.jsonl", "*.csv", "events.out.tfevents.*", "spectra", "plots", "samples")


def copy_run_records(source: Path, folder: Path) -> None:
    """Copy a run folder's records (not its checkpoints) into ``folder``, the new folder of a resume."""
    if folder.resolve() == source.resolve():
        return
    folder.mkdir(parents=True, exist_ok=True)
    for pattern in RUN_RECORDS:
        for item in source.glob(pattern):
            target = folder / item.name
            if item.is_dir():
                shutil.copytree(item, target, dirs_exist_ok=True)
            elif not target.exists():
                shutil.copy2(item, target)


def slurm_run_folder(trainer_config) -> None:
    """Under SLURM, name the run folder after the job (``slurm_<job id>``): a job requeued after
    preemption has the same id, resumes from Lightning's hpc checkpoint and writes to the same folder."""
    job = slurm_job()
    init = getattr(trainer_config.get("logger"), "init_args", None)
    if job and init is not None and "version" in init and init.version is None:
        init.version = f"slurm_{job}"


def summary_rows(trainer: pl.Trainer) -> list[tuple[str, str]]:
    """(what, value) of the run's outcome: each callback's ``summary()``, the iterations, the run folder."""
    rows = [(type(cb).__name__, s) for cb in trainer.callbacks if callable(getattr(cb, "summary", None))
            and (s := cb.summary())]
    skipped = trainer.lightning_module.skipped
    rows.append(("iterations", f"{trainer.global_step} iterations" + (f" ({skipped} skipped: non-finite)" if skipped else "")))
    stopped = interruption(trainer)
    if stopped is not None and stopped.summary_row() is not None:
        rows.append(stopped.summary_row())
    rows.append(("run folder", str(trainer.log_dir)))
    return rows


def summary(trainer: pl.Trainer) -> str:
    """The closing line: what each callback with a ``summary()`` reports, and where the run folder is."""
    rows = dict(summary_rows(trainer))
    parts = [v for k, v in rows.items() if k not in ("iterations", "stopped", "run folder")]
    stopped = [f"stopped {rows['stopped']}"] if "stopped" in rows else []
    return "Done: " + " | ".join(parts + [rows["iterations"], *stopped, f"run folder {rows['run folder']}"])


class PrintSummary(pl.Callback):
    """Prints the run's outcome when fitting ends, from inside the training processes (with a spawn
    launcher the launching process never sees the trained state): a table on a terminal, the
    ``summary`` line in a log file."""

    def on_fit_end(self, trainer: pl.Trainer, pl_module) -> None:
        line, rows = summary(trainer), summary_rows(trainer)  # on every rank: trainer.log_dir is a collective
        if not trainer.is_global_zero:
            return
        console = Console()
        if not console.is_terminal:
            print(line)
            return
        table = Table(title="Done", show_header=False, title_justify="left")
        for what, value in rows:
            table.add_row(what, value)
        console.print(table)


def run_folder(trainer: pl.Trainer) -> Path | None:
    """The folder the run writes to (its logger's, else ``default_root_dir``), known before fitting
    starts (``trainer.log_dir`` is a collective under DDP); None on ranks other than 0."""
    if launched_rank() != 0:
        return None
    logger = trainer.logger
    return Path(logger.log_dir) if logger is not None and logger.log_dir else Path(trainer.default_root_dir)


def folder_files(folder: Path | None) -> set[Path] | None:
    """The files of a run folder now (None: the folder does not exist yet, or another rank's)."""
    return set(folder.rglob("*")) if folder is not None and folder.is_dir() else None


def discard_attempt(folder: Path, before: set[Path] | None) -> None:
    """Remove what a run that failed before writing a checkpoint added to its folder (a config, an
    event file; the whole folder when it made it): a refused start or resume leaves nothing
    behind. An attempt that wrote a checkpoint keeps everything."""
    if not folder.is_dir():
        return
    added = set(folder.rglob("*")) - (before or set())
    if any(path.suffix == ".ckpt" for path in added):
        return
    if before is None:
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):  # the logger's name folder, when this run was its only one
            folder.parent.rmdir()
        return
    for path in sorted(added, key=lambda p: len(p.parts), reverse=True):  # files, then the folders they were in
        with contextlib.suppress(OSError):
            path.rmdir() if path.is_dir() else path.unlink()


def main(argv: list[str] | None = None) -> pl.Trainer:
    """Train from a command line (``sys.argv`` by default); a user error ends in one line."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get(DEBUG_ENV) == "1"
    try:
        return train([a for a in args if a != "--debug"])
    except USER_ERRORS as err:
        if debug:
            raise
        if launched_rank() != 0:
            raise SystemExit(1) from None  # rank 0 says it once
        raise fail(one_line(err)) from None


def train(args: list[str]) -> pl.Trainer:
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*IterableDataset. has .__len__. defined.*")
    # MixtureOfGaussians resumes from the iteration count (datamodules/mixture.py), not a loader state
    warnings.filterwarnings("ignore", ".*your dataloader is not resumable.*")
    warnings.filterwarnings("ignore", ".*args parameter is intended to run from within Python.*")
    # Checkpoints hold the state after the iteration's update, consistent with global_step: what we want.
    warnings.filterwarnings("ignore", ".*ModelCheckpoint with manual optimization.*")
    # logging counts iterations across epochs (short image epochs are fine); the EMA generator stays in eval mode
    warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", r".*module\(s\) in eval mode at the start of training.*")
    # Lightning's advertisements and a deprecation inside its own code, once per rank and run
    warnings.filterwarnings("ignore", ".*isinstance.treespec, LeafSpec.*")
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(lambda record: "💡 Tip" not in record.getMessage())
    if mkl_on_amd.status.startswith("on"):
        rank_zero_info(f"mkl_on_amd: {mkl_on_amd.status} ({mkl_on_amd.ENV}=0 turns it off)")
    elif mkl_on_amd.status.startswith(("preloaded", "could not")):
        rank_zero_info(f"mkl_on_amd: {mkl_on_amd.status}")
    model_help = model_help_request(args)
    if model_help is not None:
        print(model_options(model_help))
        raise SystemExit(0)
    if any(a in ("-h", "--help") for a in args):
        print(f"--model NAME: {', '.join(names('--model'))} (configs/models/NAME.yaml; or a class path such as "
              f"gans.JARE)\n"
              f"--data NAME: {', '.join(names('--data'))} (configs/data/NAME.yaml; default {DEFAULT_DATA})\n"
              f"--paper NAME: {', '.join(names('--paper'))} (configs/papers/NAME.yaml: a paper's setting)\n"
              f"--threads N, --tf32 true|false, --ckpt_path PATH|last, --debug (tracebacks)\n"
              f"{SWEEP_HELP}\n"
              f"{model_options(chosen_model(args))}\n"
              f"Every option of the model, the data and the Trainer follows.\n")
    spec, args = split_sweep_options(args)
    place_given = {a.split("=")[0].rsplit(".", 1)[-1] for a in args
                   if a.split("=")[0].startswith(("--trainer.logger.init_args.", "--trainer.default_root_dir"))}
    named = run_name(args) is not None
    args = expand_model_name(args)
    if spec and not named and run_name(args):  # a sweep's run folder: runs/<layers>_sweep
        args += [NAME_OPTION, f"{run_name(args)}_sweep"]
    try:
        cli = GanCLI(TwoPlayerGAN, pl.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                     run=False, args=args, save_config_kwargs={"overwrite": True}, auto_configure_optimizers=False,
                     parser_kwargs={"exit_on_error": False}, sweep=spec, place_given=place_given)
    except SystemExit as done:
        if done.code in (0, None) and spec and "--print_config" in " ".join(args):
            print(sweep_config(spec))  # --print_config printed the config of member 0's single run
        raise
    interrupts = Interruption()
    cli.trainer.callbacks.insert(0, interrupts)  # first: the decision to stop comes before the evaluations
    cli.trainer.callbacks.append(PrintSummary())
    model, datamodule = cli.model, cli.datamodule
    if spec:
        model, own_data = build_sweep(cli, spec)
        datamodule = own_data or datamodule
        sweep_callbacks(cli.trainer, spec, model)
    folder = run_folder(cli.trainer)
    before = folder_files(folder)
    if cli.resumed_from is not None and folder is not None:
        copy_run_records(cli.resumed_from, folder)
    try:
        cli.trainer.fit(model, datamodule=datamodule, ckpt_path=cli.config.get("ckpt_path"))
    except BaseException:
        if folder is not None and cli.trainer.global_step <= cli.resume_step:  # it trained nothing
            discard_attempt(folder, before)
        raise
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # Lightning leaves the process group up; a gloo group alive at interpreter exit can abort
        # the process ("terminate called without an active exception").
        torch.distributed.destroy_process_group()
    if interrupts.stopped is not None and interrupts.stopped[0] in EXIT_CODES:
        # the run did not finish: a script (or a scheduler) sees it in the exit status, 128 + the signal
        raise SystemExit(EXIT_CODES[interrupts.stopped[0]])
    return cli.trainer


#: the exit status of a run stopped by a signal (a requeued job ends normally: it goes on later)
EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}


if __name__ == "__main__":
    main()

"""Train a GAN from the command line (``python train.py ...`` or ``python -m commands.train ...``).

    python train.py --model jare                      # configs/base.yaml, data/ring.yaml, models/jare.yaml
    python train.py --model vanilla --model.update alternating --data.kind grid --trainer.max_steps 2000
    python train.py --model jare --data digits        # images: data/digits.yaml instead of data/ring.yaml
    python train.py --model jare --paper jare_ring --model.gamma 1000   # + papers/jare_ring.yaml
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

import mkl_on_amd  # enabled by the commands package, before torch
from callbacks.checkpoint import FinalCheckpoint
from callbacks.progress import IterationProgressBar
from commands.errors import DEBUG_ENV, USER_ERRORS, fail, one_line, short_error, yaml_problem
from commands.layers import DEFAULT_DATA, expand_model_name, names
from commands.sweep import build_sweep, split_sweep_options, sweep_callbacks
from gans import TwoPlayerGAN
from gans.checkpoint import (
    AtomicCheckpointIO,
    CheckpointError,
    changed_settings,
    iteration,
    model_class_path,
    read_checkpoint,
    record_object_arguments,
)
from gans.threads import choose_threads


class GanCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--ckpt_path", type=str | None, default=None,
                            help="checkpoint to resume from: a path, or 'last' for the newest run of the logger folder")
        parser.add_argument("--threads", type=int | None, default=None,
                            help="compute threads per training process (default: the cores this process may use, "
                                 "shared among the run's processes on this machine, less those other processes keep "
                                 "busy)")

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
        place_run_folder(trainer, self.run_name or self.config["model"]["class_path"].rsplit(".", 1)[-1].lower())
        if self.config.get("ckpt_path") == "last":
            self.config["ckpt_path"] = resume_in_place(trainer)
        if self.config.get("ckpt_path") not in (None, *LIGHTNING_CKPT_NAMES):
            step = check_resume(self.config["ckpt_path"], yaml.safe_load(self.parser.dump(self.config)))
            # the run folder's config.yaml is the record of how the run started: a resume writes its own
            self.save_config_kwargs["config_filename"] = f"config_resumed_{step}.yaml"
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


def check_batch_size(data_config) -> None:
    """A batch size that is not a positive integer, in one line before anything is built."""
    init = getattr(data_config, "init_args", None)
    size = getattr(init, "batch_size", 1) if init is not None else 1
    if not (isinstance(size, int) and size >= 1):
        raise fail(f"--data.batch_size must be a positive integer (samples per batch and process), got {size!r}")


def set_threads(requested: int | None, trainer_config) -> None:
    """Each process's compute threads (``gans.threads.choose_threads``); the environment carries the
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
    """This process's rank from the launcher's environment (0 in the process the user started)."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))


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
        # on every run, also a second one in the same Python process
        inherited = os.environ.get(RUN_FOLDER_ENV) if launched_rank() > 0 else None
        folder = inherited or str(next_version_folder(Path("runs") / name))
        os.environ[RUN_FOLDER_ENV] = trainer_config["default_root_dir"] = folder


RUN_FOLDER_ENV = "GAN_DYNAMICS_RUN_FOLDER"


def next_version_folder(parent: Path) -> Path:
    taken = [int(p.name.split("_")[-1]) for p in parent.glob("version_*") if p.name.split("_")[-1].isdigit()]
    return parent / f"version_{max(taken, default=-1) + 1}"


def check_resume(ckpt_path: str, config: dict) -> int:
    """Refuse, in one line, a resume that would not continue the run: an unreadable checkpoint, one
    of another model, changed model or data settings (they would be silently replaced by the
    checkpoint's), or nothing left to train. Returns the checkpoint's iteration."""
    try:
        checkpoint = read_checkpoint(ckpt_path)
    except CheckpointError as err:
        raise fail(str(err)) from None
    step = iteration(checkpoint)
    run_config = Path(ckpt_path).resolve().parent.parent / "config.yaml"
    own = f"resume with its own config (--config {run_config})" if run_config.is_file() else "resume with its settings"
    recorded = model_class_path(checkpoint)
    if recorded is not None and recorded != config["model"]["class_path"]:
        raise fail(f"--ckpt_path {ckpt_path} was written by {recorded}, not {config['model']['class_path']}: {own}")
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


def slurm_run_folder(trainer_config) -> None:
    """Under SLURM, name the run folder after the job (``slurm_<job id>``): a job requeued after
    preemption has the same id, resumes from Lightning's hpc checkpoint and writes to the same folder."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID") and f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    job = job or os.environ.get("SLURM_JOB_ID")
    init = getattr(trainer_config.get("logger"), "init_args", None)
    if job and init is not None and "version" in init and init.version is None:
        init.version = f"slurm_{job}"


def summary_rows(trainer: pl.Trainer) -> list[tuple[str, str]]:
    """(what, value) of the run's outcome: each callback's ``summary()``, the iterations, the run folder."""
    rows = [(type(cb).__name__, s) for cb in trainer.callbacks if callable(getattr(cb, "summary", None))
            and (s := cb.summary())]
    skipped = trainer.lightning_module.skipped
    rows.append(("iterations", f"{trainer.global_step} iterations" + (f" ({skipped} skipped: non-finite)" if skipped else "")))
    rows.append(("run folder", str(trainer.log_dir)))
    return rows


def summary(trainer: pl.Trainer) -> str:
    """The closing line: what each callback with a ``summary()`` reports, and where the run folder is."""
    rows = dict(summary_rows(trainer))
    parts = [v for k, v in rows.items() if k not in ("iterations", "run folder")]
    return "Done: " + " | ".join(parts + [rows["iterations"], f"run folder {rows['run folder']}"])


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


def discard_unused(folder: Path) -> None:
    """Remove the folder a run that failed before its first iteration created (a config, an empty
    event file): a failed start leaves nothing behind. A folder with a checkpoint is kept."""
    if folder.is_dir() and not any(folder.rglob("*.ckpt")):
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):  # the logger's name folder, when this run was its only one
            folder.parent.rmdir()


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
    if any(a in ("-h", "--help") for a in args):
        print(f"--model NAME: {', '.join(names('--model'))} (configs/models/NAME.yaml; or a class path such as "
              f"gans.JARE)\n"
              f"--data NAME: {', '.join(names('--data'))} (configs/data/NAME.yaml; default {DEFAULT_DATA})\n"
              f"--paper NAME: {', '.join(names('--paper'))} (configs/papers/NAME.yaml: a paper's setting)\n"
              f"--threads N, --ckpt_path PATH|last, --debug (tracebacks); every option of the model, the data and "
              f"the Trainer follows.\n")
    spec, args = split_sweep_options(args)
    named = run_name(args) is not None
    args = expand_model_name(args)
    if spec and not named and run_name(args):  # a sweep's run folder: runs/<layers>_sweep
        args += [NAME_OPTION, f"{run_name(args)}_sweep"]
    cli = GanCLI(TwoPlayerGAN, pl.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                 run=False, args=args, save_config_kwargs={"overwrite": True}, auto_configure_optimizers=False,
                 parser_kwargs={"exit_on_error": False})
    cli.trainer.callbacks.append(PrintSummary())
    model, datamodule = cli.model, cli.datamodule
    if spec:
        model, own_data = build_sweep(cli, spec)
        datamodule = own_data or datamodule
        sweep_callbacks(cli.trainer, spec)
    folder = run_folder(cli.trainer)
    new_folder = folder is not None and not folder.exists()
    try:
        cli.trainer.fit(model, datamodule=datamodule, ckpt_path=cli.config.get("ckpt_path"))
    except BaseException:
        if new_folder and cli.trainer.global_step == 0:
            discard_unused(folder)
        raise
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # Lightning leaves the process group up; a gloo group alive at interpreter exit can abort
        # the process ("terminate called without an active exception").
        torch.distributed.destroy_process_group()
    return cli.trainer


if __name__ == "__main__":
    main()

"""The config layers of ``python train.py``: ``configs/base.yaml``, a data preset
(``configs/data/``, ``--data NAME``), the model (``configs/models/``, ``--model NAME``) and a paper's
setting (``configs/papers/``, ``--paper NAME``), each overriding the one before; the command line
comes last. A YAML file in one of the folders is a name; nothing else registers it.
"""
from __future__ import annotations

import inspect
import json
import pydoc
import re
from pathlib import Path

import yaml

from commands.errors import fail
from game.methods import METHODS

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DEFAULT_MODEL = "jare"


#: the folders of configs/ that ``--model``, ``--data`` and ``--paper`` name files of
LAYERS = {"--model": "models", "--data": "data", "--paper": "papers"}
DEFAULT_DATA = "ring"


def names(option: str) -> list[str]:
    """The names ``option`` takes: the YAML files of its folder (models: the methods in the order of
    ``game.methods.METHODS``, then the others)."""
    found = sorted(p.stem for p in (CONFIGS / LAYERS[option]).glob("*.yaml"))
    return [n for n in METHODS if n in found] + [n for n in found if n not in METHODS] if option == "--model" else found


def data_presets() -> list[str]:
    return names("--data")


def _pop_name(argv: list[str], option: str) -> tuple[str | None, list[str]]:
    """The NAME of ``option NAME`` / ``option=NAME`` (a name has no dot: class paths and
    ``--model.x`` options stay), and the other arguments."""
    args, name, i = [], None, 0
    while i < len(argv):
        arg = argv[i]
        if arg == option and i + 1 < len(argv) and "." not in argv[i + 1]:
            name, i = argv[i + 1], i + 2
        elif arg.startswith(option + "=") and "." not in arg:
            name, i = arg.split("=", 1)[1], i + 1
        else:
            args.append(arg)
            i += 1
    return name, args


def layer(option: str, name: str) -> list[Path]:
    """The files of one named layer: a file that starts with ``# extends: OTHER`` comes after the
    files of OTHER (a model variant written as what differs)."""
    path = CONFIGS / LAYERS[option] / f"{name}.yaml"
    first = path.read_text().split("\n", 1)[0]
    base = first.removeprefix("# extends:").strip() if first.startswith("# extends:") else None
    return [*(layer(option, base) if base else []), path]


def _sections(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def expand_model_name(argv: list[str]) -> list[str]:
    """The config layers of ``--model NAME`` (default ``jare``), ``--data NAME`` (default ``ring``)
    and ``--paper NAME`` as ``--config`` files, placed first so that every other option overrides
    them: ``configs/base.yaml``, the data preset, the model, the paper's setting. A model file that
    names its data (Semi-StyleGAN) takes no data preset. The run folder is named after the layers
    (``runs/<model>[_<data>][_<paper>]``). Class paths (``--model gans.JARE``), ``--model.x``
    options and a ``--config`` of your own without ``--model NAME`` pass through unchanged."""
    chosen, args = {}, list(argv)
    for option in LAYERS:
        chosen[option], args = _pop_name(args, option)
        if chosen[option] is not None and chosen[option] not in names(option):
            what = {"--model": "model", "--data": "data preset", "--paper": "paper setting"}[option]
            example = {"--model": "gans.JARE", "--data": "datamodules.Digits", "--paper": None}[option]
            raise fail(f"unknown {what} {chosen[option]!r}; choose one of: {', '.join(names(option))}"
                       + (f" (or a class path such as {example})" if example else ""))
    model, data, paper = chosen["--model"], chosen["--data"], chosen["--paper"]
    given = any(a.split("=")[0] in ("--config", "--model", "-c", "-h", "--help") for a in args)
    if model is None and given:
        if data is not None or paper is not None:
            raise fail("--data and --paper go on top of a model's layers: give --model NAME with them")
        named = next((a for a in args if BY_CLASS.match(a)), None)
        if named is not None:
            raise fail(f"{named.split('=')[0]} names a callback of the config layers (--model NAME): without them, "
                       f"set a callback's options in your --config file")
        return args
    model = model or DEFAULT_MODEL
    model_files = layer("--model", model)
    complete = any("data" in _sections(f) for f in model_files)
    if complete and data is not None:
        raise fail(f"--model {model} names its own data ({model_files[-1].relative_to(CONFIGS.parent)}): "
                   f"change it with --data.* options or a --config")
    files = [CONFIGS / "base.yaml", *([] if complete else layer("--data", data or DEFAULT_DATA)), *model_files,
             *(layer("--paper", paper) if paper else [])]
    out, seen_callbacks = [], False
    for path in files:
        has_callbacks = "callbacks" in (_sections(path).get("trainer") or {})
        if has_callbacks and seen_callbacks:
            # jsonargparse merges a list of callbacks entry by entry with the one before it (keeping
            # init_args the new class also accepts): empty it so each layer's list stands alone;
            # the lists are merged by class below
            out.append("--trainer.callbacks=[]")
        seen_callbacks |= has_callbacks
        out += ["--config", str(path)]
    merged = merged_callbacks(files)
    merged, args = callback_options(args, merged)
    if merged is not None:
        out += ["--trainer.callbacks=[]", f"--trainer.callbacks={json.dumps(merged)}"]
    run_name = "_".join(n for n in (model, data, paper) if n)
    return [*out, "--trainer.logger.init_args.name", run_name, *args]


def merged_callbacks(files: list[Path]) -> list[dict] | None:
    """The callback lists of the layers merged by class: a later layer's entry for a class already
    in the list updates that entry's ``init_args`` (a preset changes the spectrum's cadence without
    repeating the list), an entry of a new class is appended, and an empty list (``callbacks: []``)
    empties it. None when no layer names callbacks."""
    merged = None
    for path in files:
        listed = (_sections(path).get("trainer") or {}).get("callbacks")
        if listed is None:
            continue
        if not listed:
            merged = []
            continue
        merged = list(merged or [])
        for entry in listed:
            entry = {"class_path": entry["class_path"], "init_args": dict(entry.get("init_args") or {})}
            same = next((m for m in merged if m["class_path"] == entry["class_path"]), None)
            if same is None:
                merged.append(entry)
            else:
                same["init_args"] = {**same["init_args"], **entry["init_args"]}
    return merged


#: ``--trainer.callbacks.ClassName.option VALUE``: an option of the layers' callback of that class
BY_CLASS = re.compile(r"--trainer\.callbacks\.([A-Z]\w*)\.(\w+)(=.*)?$")


def callback_options(argv: list[str], callbacks: list[dict] | None) -> tuple[list[dict] | None, list[str]]:
    """``--trainer.callbacks.ClassName.option VALUE`` (or ``=VALUE``) set ``option`` of the layers'
    callback of class ``ClassName`` (``callbacks``, merged by class), whichever its place in the
    list; the value is read as YAML. An unknown class or option fails in one line that lists what
    there is. The other arguments are returned as they were."""
    rest, i = [], 0
    callbacks = [dict(c, init_args=dict(c["init_args"])) for c in callbacks] if callbacks is not None else None
    while i < len(argv):
        found = BY_CLASS.match(argv[i])
        if not found:
            rest.append(argv[i])
            i += 1
            continue
        name, option, inline = found[1], found[2], found[3]
        if inline is None and i + 1 >= len(argv):
            raise fail(f"{argv[i]} needs a value")
        value = inline[1:] if inline is not None else argv[i + 1]
        i += 1 if inline is not None else 2
        present = [c["class_path"].rsplit(".", 1)[-1] for c in callbacks or []]
        entry = next((c for c in callbacks or [] if c["class_path"].rsplit(".", 1)[-1] == name), None)
        if entry is None:
            raise fail(f"--trainer.callbacks.{name}.{option}: the config layers have no {name} callback (they have: "
                       f"{', '.join(present) or 'none'}); add one with --trainer.callbacks+=CLASS_PATH and its "
                       f"options right after it")
        cls = pydoc.locate(entry["class_path"])
        options = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "args", "kwargs")]
        if option not in options:
            raise fail(f"--trainer.callbacks.{name}.{option}: {entry['class_path']} has no option {option!r}; its "
                       f"options are: {', '.join(options)}")
        entry["init_args"][option] = yaml.safe_load(value)
    return callbacks, rest

"""Mistakes in one line: jsonargparse's nested reports, YAML syntax errors and the library's own
errors turned into a single line that names the problem and the fix (``--debug`` shows the
traceback instead)."""
from __future__ import annotations

import difflib
import inspect
import pydoc
import re
from argparse import ArgumentError
from pathlib import Path

import yaml
from jsonargparse import ArgumentParser
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from game.methods import METHODS


def fail(message: str) -> SystemExit:
    return SystemExit(f"train.py: error: {message}")


def class_options(class_path: str) -> list[str]:
    """The init options of the class at ``class_path``, as jsonargparse names them."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(pydoc.locate(class_path), "x", fail_untyped=False)
    return [a.dest[2:] for a in parser._actions if a.dest.startswith("x.") and not a.dest.endswith(".help")]


#: the options of every method (``--model.method.NAME``), for the hint when one is given to the model
METHOD_OPTIONS = {name for cls in METHODS.values() for name in inspect.signature(cls).parameters}


#: base classes jsonargparse also tries a value against (a list of callbacks is a list of these)
GENERIC_CLASSES = ("pytorch_lightning.Callback", "pytorch_lightning.callbacks.Callback",
                   "pytorch_lightning.callbacks.callback.Callback")


def short_error(err: ArgumentError, parser) -> str:
    """One line instead of jsonargparse's nested report, with the valid choices."""
    message = str(err)
    class_paths = re.findall(r"Problem with given class_path '([^']+)'", message)
    unknown = (re.search(r"Option '([^']+)' is not accepted", message)
               or re.search(r"unrecognized arguments: --([^=\s]+)", message))
    # the base class of a list's entries (a callback) is tried too; the concrete class is what was given
    concrete = [c for c in class_paths if c not in GENERIC_CLASSES] or class_paths
    if unknown and concrete:
        class_path = concrete[0] if 'Parser key "trainer.callbacks"' in message else concrete[-1]
        options, name = class_options(class_path), unknown[1].split(".")[0]
        close = difflib.get_close_matches(name, options, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        if name == "method":  # the shortcuts (gans.JARE, ...) fix their method
            hint = " (its method is fixed; gans.TwoPlayerGAN takes any: --model gans.TwoPlayerGAN --model.method ...)"
        elif class_path in SECTIONS["model"] and name not in options:  # a method's option: one spelling
            method_option = name if name in METHOD_OPTIONS else next(iter(difflib.get_close_matches(
                name, sorted(METHOD_OPTIONS), n=1)), None)
            if method_option is not None:
                hint = f" (an option of the method: --model.method.{method_option})"
        if 'Parser key "trainer.callbacks"' in message:
            return (f"--trainer.callbacks.{name} sets an option of the last callback of the list, {class_path}, which "
                    f"has no option {name!r}{hint}; its options are: {', '.join(options)}. To change an option of "
                    f"another callback, name its class: --trainer.callbacks.CLASS.{name} (such as "
                    f"--trainer.callbacks.JacobianSpectrum.every_n_steps 30)")
        return f"{class_path} has no option {name!r}{hint}; its options are: {', '.join(options)}"
    if bad := re.search(r"Expected (.+?)\. Got value: (.*?)(?:\. Got value: .*)?$", message, re.M):
        key = ".".join(re.findall(r'Parser key "([^"]+)"', message))
        expected = re.sub(r"^an? ", "", bad[1])
        expected = re.sub(r"typing\.Literal\[(.*)\]", r"one of \1", re.sub(r"<class '(\w+)'>", r"\1", expected))
        return f"invalid value {bad[2]!r} for --{key}: expected {expected}"
    if unknown := re.match(r"unrecognized arguments: (\S+)", message, re.I):
        option = unknown[1].split("=")[0]
        close = nested_option(option) or next(iter(difflib.get_close_matches(
            option, [s for a in parser._actions for s in a.option_strings], n=1)), None)
        return f"unknown option {unknown[1]}" + (f" (did you mean {close}?)" if close else "")
    return " ".join(message.split()) if message else repr(err)


#: where the options of each section of a config come from, for ``nested_option``
SECTIONS = {"model": ("gans.TwoPlayerGAN", "gans.SemiStyleGAN"),
            "data": ("datamodules.MixtureOfGaussians", "datamodules.ImageFolder", "datamodules.DSprites"),
            "trainer": ("pytorch_lightning.Trainer",)}


def nested_option(option: str) -> str | None:
    """``--model.optimizer.lr`` for ``--optimizer.lr``: the option in the section whose classes take
    its first part (the model's, the data's or the Trainer's)."""
    head = option.lstrip("-").split(".")[0]
    for section, class_paths in SECTIONS.items():
        if any(head in {name.split(".")[0] for name in class_options(path)} for path in class_paths):
            return f"--{section}.{option.lstrip('-')}"
    return None


def yaml_problem(args: list[str]) -> str | None:
    """Which ``--config`` file does not parse as YAML, and where."""
    files = [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("--config", "-c")]
    files += [a.split("=", 1)[1] for a in args if a.startswith("--config=")]
    for path in files:
        try:
            yaml.safe_load(Path(path).read_text())
        except OSError:
            continue
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            return f"the config {path} is not valid YAML at{where}: {problem}"
    return None


#: what a mistake in a command line, a config, a data folder or a network raises: reported in one
#: line (``--debug`` or GAN_DYNAMICS_DEBUG=1 shows the traceback)
USER_ERRORS = (ValueError, TypeError, OSError, FloatingPointError, MisconfigurationException)
DEBUG_ENV = "GAN_DYNAMICS_DEBUG"


def one_line(err: BaseException) -> str:
    """The message of the innermost cause (jsonargparse wraps a class's own error in a report of
    the whole config), on one line."""
    while err.__cause__ is not None and isinstance(err.__cause__, USER_ERRORS):
        err = err.__cause__
    message = " ".join(str(err).split()) or type(err).__name__
    return message if isinstance(err, (ValueError, OSError)) else f"{type(err).__name__}: {message}"

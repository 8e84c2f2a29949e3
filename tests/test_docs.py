"""The README and the documentation stay true: every ``python train.py`` command they show parses,
and the README's Python example runs."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from commands import train

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def code_blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), flags=re.S)


def train_commands() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for block in code_blocks(page, "bash"):
            for line in block.splitlines():
                line = line.split("  #")[0].strip()
                if line.startswith("python train.py"):
                    found.append((page.name, line))
    return found


COMMANDS = train_commands()


def test_the_pages_show_commands():
    assert len(COMMANDS) > 20


@pytest.mark.parametrize("page,command", COMMANDS, ids=[f"{p}:{c[16:60]}" for p, c in COMMANDS])
def test_every_documented_command_parses(page, command, tmp_path, monkeypatch, capsys):
    """Each command, with ``--print_config``, passes the parser: its model, data and paper names,
    and every option, exist (files it names are created empty where the command needs them)."""
    monkeypatch.chdir(tmp_path)
    argv = shlex.split(command)[2:]
    if "--config" in argv:  # a file of the reader's own: stand in an empty one
        path = Path(argv[argv.index("--config") + 1])
        if not path.is_absolute() and not (ROOT / path).exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}\n")
        else:
            pytest.skip("a run's own config.yaml, written by an earlier run")
    argv = [a for a in argv if not a.startswith("my_nets.")] if "my_nets" in command else argv
    if "--model.discriminator" in argv and "--model.discriminator.hidden" in argv:
        pytest.skip("names a module of the reader's own")
    with pytest.raises(SystemExit) as info:
        train.main([*argv, "--print_config"])
    assert info.value.code in (0, None), f"{page}: {command}: {info.value.code}"


def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    (example,) = [b for b in code_blocks(ROOT / "README.md", "python") if "pl.Trainer" in b]
    example = example.replace("pl.Trainer(max_steps=2000)", "pl.Trainer(max_steps=3, logger=False, enable_checkpointing=False, "
                                                            "enable_progress_bar=False, enable_model_summary=False)")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(example, "README.md", "exec"), scope)
    assert scope["model"].trainer.global_step == 3
    assert len(scope["grads_g"]) == len(list(scope["model"].generator.parameters()))

"""The layering of the code (docs/layout.md): the library (runtime, then game, spectra and gans, then
datamodules and metrics, then callbacks) never imports what sits above it, the plain-PyTorch floors
(runtime, game, spectra, the networks) never import Lightning, no module imports itself back through
others, and only commands/, benchmarks/ and train.py are programs."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: each package and the project packages it may import
ALLOWED = {
    "runtime": set(),
    "game": {"runtime"},
    "spectra": {"runtime", "game"},
    "gans": {"runtime", "game", "spectra"},
    "datamodules": {"runtime"},
    "metrics": {"runtime"},
    "callbacks": {"runtime", "game", "spectra", "gans", "datamodules", "metrics", "figures"},
    "commands": {"runtime", "game", "spectra", "gans", "datamodules", "metrics", "figures", "callbacks", "mkl_on_amd"},
}
#: the project's modules outside packages (``figures`` draws for callbacks, commands and benchmarks;
#: ``mkl_on_amd`` must act before torch is imported), and the project modules each may import
MODULES = {"figures": {"spectra"}, "mkl_on_amd": set()}
#: what runs without Lightning: a training loop of one's own takes these
PLAIN = ("runtime", "game", "spectra", "gans.networks", "datamodules.mixture_samples", "figures")


def modules() -> dict[str, Path]:
    found = {".".join(f.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): f
             for package in ALLOWED for f in (ROOT / package).rglob("*.py")}
    return {**found, **{name: ROOT / f"{name}.py" for name in MODULES}}


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports (``from gans import game`` imports ``game.algebra``)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] in known or a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] in ALLOWED or node.module in known:
                out |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                        for a in node.names}
    return out


GRAPH = {name: imports(path, modules()) for name, path in modules().items()}


@pytest.mark.parametrize("package", [*ALLOWED, *MODULES])
def test_a_package_imports_only_what_lies_below_it(package):
    allowed = {**ALLOWED, **MODULES}[package]
    above = {(m, target) for m, targets in GRAPH.items() if m.split(".")[0] == package
             for target in targets if target.split(".")[0] not in allowed | {package}}
    assert above == set()


def test_no_import_cycles():
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in GRAPH.get(module, ()):
            if target == module:
                continue
            assert state.get(target) != 1, f"import cycle: {' -> '.join(path[path.index(target):] + [module, target])}"
            if target not in state:
                visit(target, path + [module])
        state[module] = 2

    for module in GRAPH:
        if module not in state:
            visit(module, [])


@pytest.mark.parametrize("package", PLAIN)
def test_the_plain_floors_import_no_lightning(package):
    """Every module of the plain floors imports (in a fresh interpreter) without importing Lightning."""
    names = sorted(name for name in GRAPH if name == package or name.startswith(package + "."))
    code = (f"import sys; [__import__(n) for n in {names!r}]; "
            f"bad = [m for m in sys.modules if m.split('.')[0] in ('pytorch_lightning', 'lightning')]; "
            f"assert not bad, bad")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_library_holds_no_programs():
    programs = [name for name, path in modules().items()
                if name.split(".")[0] != "commands" and "__main__" in path.read_text()]
    assert programs == []

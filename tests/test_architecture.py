"""The house's shape: no import cycle among kdlab's modules and the import-linter contracts of
pyproject.toml kept (checked); the longest functions and modules (reported, as advice:
cohesion over size, a module is as long as its one job).

Sizes come from `ast` (a function runs from its `def` line, decorators not counted, to its last
line, docstring included; nested functions and methods count on their own); the import graph
from grimp, which also counts imports inside functions and under `if TYPE_CHECKING:`.

`python tests/test_architecture.py` prints the 10 longest functions and modules of kdlab and
its import cycles: the before/after figures of a restructuring.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grimp
import pytest
from importlinter.api import read_configuration

import kdlab

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(kdlab.__file__).resolve().parent  # the kdlab the suite runs, as grimp sees it
# Past these, ask whether a function or module does one job (the report marks them; no test).
ADVISED_FUNCTION_LINES = 60
ADVISED_MODULE_LINES = 400


@dataclass(frozen=True, order=True)
class Length:
    lines: int
    name: str  # kdlab/engine.py, or kdlab/engine.py:Trainer.fit


def python_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.py"))


def module_lengths(root: Path) -> list[Length]:
    """Every module under `root` with its line count, named relative to root's parent."""
    return [
        Length(len(path.read_text().splitlines()), str(path.relative_to(root.parent)))
        for path in python_files(root)
    ]


def function_lengths(root: Path) -> list[Length]:
    """Every function and method under `root`, named file:Class.method (file:outer.inner)."""
    lengths = []
    for path in python_files(root):
        tree = ast.parse(path.read_text(), filename=str(path))
        lengths += definitions(tree, f"{path.relative_to(root.parent)}:")
    return lengths


def definitions(node: ast.AST, prefix: str) -> Iterator[Length]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            name = prefix + child.name
            yield Length(child.end_lineno - child.lineno + 1, name)
            yield from definitions(child, f"{name}.")
        elif isinstance(child, ast.ClassDef):
            yield from definitions(child, f"{prefix}{child.name}.")
        else:  # functions under `if`, `try`, `with` ...
            yield from definitions(child, prefix)


def listing(lengths: list[Length]) -> str:
    return "\n".join(f"{length.lines:5d}  {length.name}" for length in lengths)


def kdlab_graph() -> grimp.ImportGraph:
    return grimp.build_graph("kdlab", cache_dir=None)


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The groups of modules that import each other, directly or not (strongly connected
    components of the import graph with more than one module), each sorted."""
    groups: set[tuple[str, ...]] = set()
    for module in graph.modules:
        both_ways = graph.find_upstream_modules(module) & graph.find_downstream_modules(module)
        if both_ways:
            groups.add(tuple(sorted({module, *both_ways})))
    return [list(group) for group in sorted(groups)]


def cycle_imports(graph: grimp.ImportGraph, group: list[str]) -> list[str]:
    """The import lines that tie a cycle's modules together: module:line `statement`."""
    lines = []
    for importer in group:
        for imported in sorted(graph.find_modules_directly_imported_by(importer) & set(group)):
            for detail in graph.get_import_details(importer=importer, imported=imported):
                where, statement = detail["line_number"], detail["line_contents"]
                lines.append(f"{importer}:{where} `{statement}`")
    return lines


def cycles_report(graph: grimp.ImportGraph) -> str:
    return "\n".join(
        f"{' <-> '.join(group)}:\n  " + "\n  ".join(cycle_imports(graph, group))
        for group in import_cycles(graph)
    )


def test_kdlab_modules_import_no_cycle():
    graph = kdlab_graph()
    assert not import_cycles(graph), f"import cycles:\n{cycles_report(graph)}"


def test_the_import_linter_contracts_hold():
    pyproject = ROOT / "pyproject.toml"
    try:
        read_configuration(str(pyproject))
    except FileNotFoundError:
        pytest.skip("pyproject.toml has no [tool.importlinter] section yet")
    # In a child process: import-linter configures logging (it disables the loggers that
    # exist), which would silence kdlab's logger for the tests after this one.
    code = (
        "import sys; from importlinter.cli import lint_imports; "
        f"sys.exit(lint_imports(config_filename={str(pyproject)!r}, no_cache=True, no_logo=True))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def shape_report(top: int = 10) -> str:
    """The `top` longest functions and modules of kdlab, and its import cycles."""
    functions = sorted(function_lengths(PACKAGE), reverse=True)[:top]
    modules = sorted(module_lengths(PACKAGE), reverse=True)[:top]
    return "\n".join(
        [
            f"{top} longest functions (advice: about {ADVISED_FUNCTION_LINES} lines at most):",
            listing(functions),
            f"{top} longest modules (advice: about {ADVISED_MODULE_LINES} lines at most):",
            listing(modules),
            "import cycles:",
            cycles_report(kdlab_graph()) or "none",
        ]
    )


if __name__ == "__main__":
    print(shape_report())


def test_the_commonest_typos_are_refused_before_torch_is_imported():
    """An unknown command, method or trainer value answers in a fraction of a second: the
    entry point refuses them (one line, exit 2) without importing torch (~3 s)."""
    code = (
        "import sys\n"
        "from kdlab.cli.main import main\n"
        "for argv in (['banana'], ['distill', 'loss=nope'], ['train', 'trainer.epochs=-1']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as stop:\n"
        "        print(stop.code, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n") == ["2 False", "2 False", "2 False", ""]
    errors = out.stderr.splitlines()
    assert [line.split(":")[0:2] for line in errors] == [["kdlab", " error"]] * 3
    assert "unknown command 'banana'" in errors[0]
    assert "unknown loss 'nope': choose one of ab, at, " in errors[1]
    assert "trainer.epochs must be positive, got -1" in errors[2]


def test_the_configuration_and_its_checks_do_not_import_torchvision():
    """torchvision's import (~2.5 s: it loads torch._dynamo) is paid only by what uses it:
    a command that fails its pre-flight, or trains on tensors in memory, starts without it."""
    code = (
        "import sys, kdlab.cli.main, kdlab.runs.config, kdlab.runs.preflight, kdlab.data, "
        "kdlab.models, kdlab.engine.trainer, kdlab.methods.registry; "
        "print('torchvision' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

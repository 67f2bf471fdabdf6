"""MkDocs hook: the pages that list what the code holds are written from the code at build time.

A page holds a marker alone on its line, `<!-- generated: NAME -->` or
`<!-- generated: NAME ARG -->`, which `on_page_markdown` replaces with the table NAME's
generator writes from kdlab itself: the typed config of a command (`config
train|distill|fitnet`), the methods of the `loss=` registry, the models of `model=`, the data
sets of `data=`, the bad-input and fault catalogues of tests/, and the layers of
pyproject.toml's import-linter contract. So the documentation cannot drift from the code: a
new method, model, setting or refusal shows up at the next build, and tests/test_docs.py
checks that every registered name does. Nothing here runs the CLI or trains anything.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: import-linter's own TOML reader
    import tomli as tomllib

from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^<!-- generated: (\w+)(?: (\w+))? -->$", re.MULTILINE)  # alone on its line
# The modules that may hold the bad-input catalogue's CATALOGUE, in tests/.
CATALOGUE_MODULES = ("catalogue", "harness")
# A field's own comment on its line: `name: type = default  # what it is`.
FIELD_COMMENT = re.compile(r"^\s+(\w+): [^#]*#\s*(.*)$")


def on_config(config: Any) -> Any:
    """Document this checkout: its src/ first on the path, whatever kdlab is installed."""
    src = str(ROOT / "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    return config


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    def generated(match: re.Match) -> str:
        name, arg = match.group(1), match.group(2)
        if name not in GENERATORS:
            raise PluginError(
                f"{page.file.src_path}: unknown marker 'generated: {name}': "
                f"use one of {', '.join(GENERATORS)}"
            )
        return GENERATORS[name](arg) if arg else GENERATORS[name]()

    return MARKER.sub(generated, markdown)


# --- helpers ---------------------------------------------------------------------------------


def cell(value: Any) -> str:
    """A value as a markdown table cell: code (a table's cells may hold pipes in code)."""
    text = value if isinstance(value, str) else repr(value)
    fence = "``" if "`" in text else "`"
    return f"{fence}{text}{fence}"


def override(value: Any) -> str:
    """A value as an override writes it: true, null, 0.1, [0.5, 0.75], cifar10."""
    if value is None or isinstance(value, bool | list | dict):
        return json.dumps(value)
    return str(value)


def prose(text: str) -> str:
    """Text as a table cell: one line, its pipes escaped, `<` not taken for an HTML tag."""
    return text.replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def type_name(kind: Any) -> str:
    if isinstance(kind, str):
        return kind
    return getattr(kind, "__name__", str(kind))


def field_comments(cls: type) -> dict[str, str]:
    """Each field's comment on its own line in the source of `cls` and its bases."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for line in source.splitlines():
            match = FIELD_COMMENT.match(line)
            if match:
                comments[match.group(1)] = match.group(2)
    return comments


# --- the generators --------------------------------------------------------------------------


def config_reference(command: str) -> str:
    """Every key of `kdlab COMMAND`'s composed default config: type, default, what it is."""
    from kdlab.runs.preflight import compose_config

    rows: list[list[str]] = []

    def walk(node: Any, prefix: str) -> None:
        comments = field_comments(type(node))
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{prefix}{f.name}.")
            else:
                note = prose(comments.get(f.name, ""))
                row = [cell(prefix + f.name), cell(type_name(f.type)), cell(override(value)), note]
                rows.append(row)

    walk(compose_config(command), "")
    intro = (
        f"The config `kdlab {command}` composes with no overrides (`kdlab {command} --cfg job` "
        "prints it), generated from kdlab's dataclasses: every key is an override "
        "(`key=value`). The `data` keys are those of the default data set; each `data=NAME` "
        "has its own extra fields and each `loss=NAME` its own settings (both listed on their "
        "pages).\n\n"
    )
    return intro + table(["key", "type", "default", "what it is"], rows)


def methods_table() -> str:
    """The `loss=` registry: each method's summary (its paper), what it taps, its settings."""
    import kdlab.methods.registry  # noqa: F401  (imports every built-in method)
    from kdlab.methods.base import METHODS, settings_of

    rows = []
    for name, cls in METHODS.items():
        settings = [
            f"`loss.{key}={override(default)}`"
            for key, _, default in settings_of(cls)
            if default is not dataclasses.MISSING
        ]
        rows.append([cell(name), prose(cls.summary), cell(cls.taps), ", ".join(settings) or "-"])
    return table(["`loss=`", "what it transfers (paper)", "taps", "settings (defaults)"], rows)


def models_table() -> str:
    """The `model=` registry as `kdlab models` prints it (built on the meta device)."""
    from kdlab.models.registry import describe_models

    def millions(count: int | None) -> str:
        return "-" if count is None else f"{count / 1e6:.3f}M"

    rows = []
    for info in describe_models():
        points = " ".join(
            f"{p}*" if p == info.default_feature_point else p for p in info.feature_points
        )
        published = "-" if info.published is None else f"{info.published:.2f}M"
        row = [millions(info.params), millions(info.params_100), published, points or "-"]
        rows.append([cell(info.name), *row, prose(info.notes)])
    header = ["`model=`", "params@10", "params@100", "published@100", "feature points", "what"]
    return table(header, rows)


def datasets_table() -> str:
    """The `data=` registry: each data set, its images and its own settings."""
    from kdlab.data.registry import DATASETS
    from kdlab.data.settings import DataConfig

    common = {f.name for f in dataclasses.fields(DataConfig)}
    rows = []
    for name, spec in DATASETS.items():
        own = [f for f in dataclasses.fields(spec.settings) if f.name not in common]
        settings = ", ".join(f"`data.{f.name}={override(f.default)}`" for f in own) or "-"
        size = "data.image_size" if spec.image_size is None else f"{spec.image_size} px"
        channels = "data.channels" if spec.channels is None else str(spec.channels)
        rows.append(
            [cell(name), prose(spec.description), size, channels, cell(spec.preset), settings]
        )
    header = ["`data=`", "what", "image size", "channels", "study preset", "its own settings"]
    return table(header, rows)


def tests_module(names: tuple[str, ...], attribute: str) -> Any:
    """`attribute` from the first module of tests/ among `names` that holds it."""
    tests = str(ROOT / "tests")
    sys.path.insert(0, tests)
    try:
        for name in names:
            try:
                module = importlib.import_module(name)
            except ModuleNotFoundError as error:
                if error.name != name:
                    raise
                continue
            if hasattr(module, attribute):
                return getattr(module, attribute)
    finally:
        sys.path.remove(tests)
    raise PluginError(
        f"no {attribute} in tests/ ({', '.join(f'{n}.py' for n in names)}): "
        f"point docs/hooks.py at the module that now holds it"
    )


def errors_table() -> str:
    """The bad-input catalogue: each input and what its one error line must say."""
    catalogue = tests_module(CATALOGUE_MODULES, "CATALOGUE")
    rows = []
    for case in catalogue:
        if case.fragments:
            says = " … ".join(cell(fragment) for fragment in case.fragments)
        else:
            says = f"its line is checked in `tests/{case.tested_in}`"
        rows.append([prose(case.shown), says])
    intro = f"{len(rows)} bad inputs, each a test of the default suite:\n\n"
    return intro + table(["input", "the one `kdlab: error:` line says (exit code 2)"], rows)


def faults_table() -> str:
    """The fault catalogue: each fault, what kdlab does, the test that checks it."""
    faults = tests_module(("faults",), "FAULTS")
    rows = [[prose(f.fault), prose(f.response), cell(f.test)] for f in faults]
    intro = f"{len(rows)} faults tried:\n\n"
    return intro + table(["fault", "what kdlab does", "checked by"], rows)


def layers_table() -> str:
    """The layers of pyproject.toml's import-linter contract, top to bottom, each package
    described by its own docstring's first paragraph (read, not imported)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = project["tool"]["importlinter"]["contracts"]
    layers = next(c["layers"] for c in contracts if c["type"] == "layers")
    rows = []
    for number, layer in enumerate(layers, 1):
        for module in (m.strip() for m in layer.split("|")):
            rows.append([str(number), cell(module), prose(module_summary(module))])
    intro = (
        f"{len(layers)} layers, generated from `pyproject.toml`'s `[tool.importlinter]` "
        "at each build of this site; modules of one layer do not import each other.\n\n"
    )
    return intro + table(["layer", "package", "its job (its docstring)"], rows)


def module_summary(module: str) -> str:
    """The first paragraph of a kdlab module's docstring, as one line."""
    path = ROOT / "src" / Path(*module.split("."))
    file = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    doc = ast.get_docstring(ast.parse(file.read_text())) or ""
    return " ".join(doc.split("\n\n")[0].split())


GENERATORS: dict[str, Callable[..., str]] = {
    "config": config_reference,
    "methods": methods_table,
    "models": models_table,
    "datasets": datasets_table,
    "errors": errors_table,
    "faults": faults_table,
    "layers": layers_table,
}

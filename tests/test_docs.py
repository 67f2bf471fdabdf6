"""The documentation site builds strictly, and its generated pages list what the code holds.

`mkdocs build --strict` fails on a broken link or anchor, a page missing from the nav, a
docstring mkdocstrings cannot render and a `generated:` marker docs/hooks.py does not know;
the registries' tables are written from kdlab at build time, so every registered method and
model must be on its page.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import kdlab.methods.registry  # noqa: F401  (registers every built-in method)
from kdlab.methods.base import METHODS
from kdlab.models.registry import MODELS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    command = [sys.executable, "-m", "mkdocs", "build", "--strict"]
    command += ["--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(out)]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def table_rows(page: Path) -> list[str]:
    """Each table row of a built page as its text, cells separated by single spaces."""
    rows = re.findall(r"<tr>(.*?)</tr>", page.read_text(), flags=re.DOTALL)
    return [" ".join(html.unescape(re.sub(r"<[^>]+>", " ", row)).split()) for row in rows]


def test_the_site_builds_strictly_with_every_marker_replaced(site: Path) -> None:
    pages = list(site.rglob("*.html"))
    assert len(pages) > 20
    left = [p.relative_to(site) for p in pages if "<!-- generated:" in p.read_text()]
    assert not left, f"markers not on a line of their own, left unreplaced: {left}"


def test_the_methods_page_lists_every_registered_method_with_its_summary(site: Path) -> None:
    rows = table_rows(site / "methods.html")
    for name, method in METHODS.items():
        summary = " ".join(method.summary.split())
        assert any(row.startswith(f"{name} {summary} {method.taps}") for row in rows), name


def test_the_models_page_lists_every_registered_model_with_its_notes(site: Path) -> None:
    rows = table_rows(site / "models.html")
    for name, builder in MODELS.items():
        notes = " ".join(builder.notes.split())
        assert any(row.startswith(f"{name} ") and notes in row for row in rows), name


def test_each_training_commands_page_lists_its_config_keys(site: Path) -> None:
    for command, key in (("train", "trainer.epochs"), ("distill", "T"), ("fitnet", "stage2.mode")):
        rows = table_rows(site / "commands" / f"{command}.html")
        assert any(row.startswith(f"{key} ") for row in rows), command

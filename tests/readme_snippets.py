"""The code blocks of the user docs that tests run as they are: each follows a marker line
`<!-- tested: NAME -->` in README.md or a page under docs/, wherever the text lives."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def snippet(name: str) -> str:
    """The code block right after `<!-- tested: NAME -->`."""
    marker = f"<!-- tested: {name} -->"
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = page.read_text() if page.is_file() else ""
        if marker in text:
            after = text.split(marker, 1)[1]
            block = re.match(r"\s*```\w*\n(.*?)\n```", after, re.DOTALL)
            assert block, f"{page}: no code block right after {marker}"
            return block.group(1)
    raise AssertionError(f"no {marker} in README.md or docs/")

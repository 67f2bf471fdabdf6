"""The benchmarks' report: a header of settings and a table, printed fixed-width and
optionally written as markdown."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from pathlib import Path

import torch

from benchlib.timing import note


def device_line(device: torch.device) -> str:
    """ "device: NAME": the GPU's name, or the CPU's model and logical core count."""
    if device.type == "cuda":
        return f"device: {torch.cuda.get_device_name(device)}"
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    name = models[0] if models else platform.processor() or platform.machine()
    return f"device: {name} ({os.cpu_count()} logical cores)"


def settings_line(settings: str, batch_size: int, images: str, quick: bool) -> str:
    """torch's version and threads, the script's own settings, batch size and epoch size."""
    return (
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {settings}"
        f"batch size {batch_size}, {images}{' (--quick)' if quick else ''}"
    )


def pipe_row(parts: Sequence[str]) -> str:
    return "| " + " | ".join(parts) + " |"


def text_table(columns: Sequence[str], rows: list[list[str]]) -> str:
    """Fixed-width, names left and figures right, ruled above and below (airbench style)."""
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]

    def line(parts: Sequence[str]) -> str:
        name, *figures = parts
        aligned = [p.rjust(w) for p, w in zip(figures, widths[1:], strict=True)]
        return pipe_row([name.ljust(widths[0]), *aligned])

    rule = "-" * len(line(columns))
    return "\n".join([rule, line(columns), rule, *map(line, rows), rule])


def markdown_table(columns: Sequence[str], rows: list[list[str]]) -> str:
    align = ["---", *["---:"] * (len(columns) - 1)]
    return "\n".join([pipe_row(columns), pipe_row(align), *map(pipe_row, rows)])


def report(
    header: list[str],
    seconds: float,
    columns: Sequence[str],
    table: list[list[str]],
    out: Path | None,
) -> None:
    """Print the header (ending in the run's total time) and the fixed-width table; with
    `out`, also write them as markdown."""
    header = [*header, f"total {seconds:.0f} s"]
    print("\n".join([*header, text_table(columns, table)]))
    if out is not None:
        bullets = [f"- {line}" for line in header]
        out.write_text("\n".join([*bullets, "", markdown_table(columns, table), ""]))
        note(f"wrote {out}")

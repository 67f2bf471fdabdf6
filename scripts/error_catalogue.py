"""Print kdlab's catalogue of bad input as a markdown table, from real runs of the CLI.

Each row is an input and the one line kdlab prints for it on stderr (exit code 2). The inputs
are `CATALOGUE` in tests/catalogue.py, one list for the tests (tests/test_bad_input.py) and
this table; building their workspace (tests/harness.py) trains one tiny teacher, so expect a
few minutes on a small CPU. With --faults it prints the fault catalogue instead (`FAULTS` in
tests/faults.py: each fault, what kdlab does, the test that checks it), at once: nothing is
run.

Usage:
  python scripts/error_catalogue.py [--faults] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the catalogue's home

from catalogue import CATALOGUE, run_bad_input
from faults import FAULTS
from harness import build_workspace, resume_one_more_epoch, train_one_epoch

DISK_FULL = "a disk that fills up while a checkpoint is saved (here: a file-size limit)"


def error_line(proc, shown: str) -> str:
    """The one error line; anything else is a bug in kdlab, reported instead of tabulated."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    if proc.returncode != 2 or len(lines) != 1:
        raise SystemExit(f"{shown}: exit {proc.returncode}, stderr:\n{proc.stderr}")
    return lines[0]


def catalogue_rows(root: Path) -> list[tuple[str, str]]:
    """(input, message) for every catalogue entry and a full disk, paths relative to `root`."""
    ws = build_workspace(root / "workspace")
    rows = []
    for i, case in enumerate(CATALOGUE):
        proc = run_bad_input(case, ws, root / f"run{i}")
        rows.append((case.shown, error_line(proc, case.shown)))
    run = train_one_epoch(ws.root)
    checkpoint_size = (run / "checkpoints" / "last.pt").stat().st_size
    full = resume_one_more_epoch(run, checkpoint_size // 2)
    rows.append((DISK_FULL, error_line(full, DISK_FULL)))
    return [(shown, relative(message, ws.root, root)) for shown, message in rows]


def relative(message: str, *roots: Path) -> str:
    for directory in roots:
        message = message.replace(f"{directory}/", "")
    return message


def code(text: str) -> str:
    """A markdown code span that survives backticks and a table's pipes."""
    fence = "``" if "`" in text else "`"
    return f"{fence} {text} {fence}".replace("|", "\\|")


def markdown(rows: list[tuple[str, str]]) -> str:
    lines = [f"{len(rows)} bad inputs tried:", ""]
    lines += ["| input | what kdlab prints (stderr, exit code 2) |", "|---|---|"]
    lines += [f"| {shown} | {code(message)} |" for shown, message in rows]
    return "\n".join(lines) + "\n"


def faults_markdown() -> str:
    lines = [f"{len(FAULTS)} faults tried:", ""]
    lines += ["| fault | what kdlab does | checked by |", "|---|---|---|"]
    lines += [f"| {f.fault} | {f.response} | {code(f.test)} |" for f in FAULTS]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    parser.add_argument("--faults", action="store_true", help="the fault catalogue instead")
    args = parser.parse_args()
    if args.faults:
        table = faults_markdown()
    else:
        with tempfile.TemporaryDirectory(prefix="kdlab-catalogue-") as tmp:
            table = markdown(catalogue_rows(Path(tmp)))
    print(table, end="")
    if args.out:
        args.out.write_text(table)


if __name__ == "__main__":
    main()

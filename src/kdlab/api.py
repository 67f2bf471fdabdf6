"""kdlab from Python (a notebook, a script): load a finished run, or run a command.

`run` goes through the CLI's own path in a child process (pre-flight, Hydra, run dir, log),
so a notebook gets exactly what `kdlab COMMAND ...` would give, and Hydra's process-wide
state (logging, working dir, argv) never touches the caller's interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from kdlab.engine.checkpoint import Checkpoint, checkpoint_in
from kdlab.errors import KdlabError
from kdlab.runs.plugins import load_plugins

RUN_COMMANDS = ("train", "distill", "fitnet")


@dataclass(frozen=True)
class LoadedRun:
    """A finished run's selected model, ready to predict with."""

    model: nn.Module  # in eval mode, on the device it was loaded to
    class_names: list[str]  # index i = the model's output i
    config: dict[str, Any]  # the run's resolved config
    summary: dict[str, Any] | None  # the run's summary.json; None for a lone .pt file
    checkpoint: Path


def load_run(path: str | Path, device: str = "cpu", *, allow_modified: bool = False) -> LoadedRun:
    """The model of a run dir (its best.pt) or of a .pt file, in eval mode (a plugin's model
    too: the plugins are loaded first); a file that differs from its record (best.pt.json) is
    refused unless `allow_modified`."""
    load_plugins()
    file = checkpoint_in(path)
    state = Checkpoint.read(
        file, device, allow_modified=allow_modified, override="allow_modified=True"
    )
    model = state.build_model(file).to(device).eval()
    from kdlab.report.runs import read_summary  # checked like report's (imports matplotlib)

    run_dir = file.parent.parent
    summary = None
    if file.parent.name == "checkpoints" and (run_dir / "summary.json").is_file():
        summary = read_summary(run_dir)
    return LoadedRun(model, list(state.class_names), state.config, summary, file)


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _with_run_dir(command: str, overrides: list[str]) -> tuple[list[str], Path]:
    """The overrides with hydra.run.dir set (resolved here when not given), and that dir:
    where the run writes its summary."""
    from kdlab.cli.main import resolved_run_dir

    given = [o.split("=", 1)[1] for o in overrides if _key(o) == "hydra.run.dir"]
    if given:
        return overrides, Path(given[-1])
    run_dir = resolved_run_dir(command, overrides)
    return [*overrides, f"hydra.run.dir={run_dir}"], Path(run_dir)


def run(command: str, overrides: Sequence[str] = (), *, echo: bool = True) -> dict[str, Any]:
    """`kdlab COMMAND OVERRIDES...` as a function: the run's summary.json as a dict.

    Mistakes raise KdlabError with the CLI's one-line message (never SystemExit); the log is
    printed as it comes unless `echo=False`.
    """
    from kdlab.runs.preflight import compose_config

    if command not in RUN_COMMANDS:
        raise KdlabError(f"kdlab.run runs {', '.join(RUN_COMMANDS)}, not '{command}'")
    overrides = [str(o) for o in overrides]
    flags = [o for o in overrides if o.startswith("-")]
    if flags:
        raise KdlabError(f"kdlab.run takes key=value overrides only, not {flags[0]}")
    compose_config(command, overrides)  # a typo fails here, in a second
    overrides, run_dir = _with_run_dir(command, overrides)
    tail = _child(command, overrides, echo)
    if tail.returncode != 0:
        errors = [line for line in tail.lines if line.startswith("kdlab: error: ")]
        message = errors[-1].removeprefix("kdlab: error: ") if errors else " | ".join(tail.lines)
        raise KdlabError(message or f"kdlab {command} exited {tail.returncode}")
    return json.loads((run_dir / "summary.json").read_text())


@dataclass
class _Tail:
    returncode: int
    lines: list[str]


def _child(command: str, overrides: list[str], echo: bool) -> _Tail:
    """Run `python -m kdlab` with the caller's interpreter, echoing its output line by line."""
    args = [sys.executable, "-m", "kdlab", command, *overrides]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    last: deque[str] = deque(maxlen=20)
    pipe = subprocess.PIPE
    with subprocess.Popen(
        args, stdout=pipe, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env
    ) as child:
        assert child.stdout is not None
        for line in child.stdout:
            last.append(line.rstrip("\n"))
            if echo:
                print(line, end="", flush=True)
    return _Tail(child.returncode, list(last))

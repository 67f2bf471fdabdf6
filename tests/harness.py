"""The CLI test harness: the real `kdlab` on tiny generated data.

`run_kdlab` calls the console script's entry point in the test's own process (a fresh
interpreter costs seconds of imports per command), isolated as if it ran in a process of its
own; `run_kdlab_process` starts a fresh interpreter where the process is what is tested.
The tiny settings (TINY, FAST, FOLDER_RUN), the runners, one-epoch
runs to resume, and the `Workspace` the bad-input catalogue (catalogue.py) refers to: image
folders (kdlab's own tiny-copy writer), a finished teacher run, damaged and crafted
checkpoints, built by really running kdlab once.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import random
import resource
import subprocess
import sys
import tempfile
import traceback
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import torch
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobRuntime
from omegaconf.basecontainer import BaseContainer

from kdlab.cli.main import main
from kdlab.data.imagefolder import write_image_folder
from kdlab.data.registry import DATASETS
from kdlab.engine.checkpoint import Checkpoint
from kdlab.methods.base import METHODS
from kdlab.methods.registry import BUILT_IN  # noqa: F401  (the built-in methods registered)
from kdlab.models.registry import MODELS
from kdlab.runs import preflight, run_dir
from kdlab.runs.plugins import load_plugins

# Small enough for seconds on 2 CPU cores, big enough for every split to have full batches:
# 5 training steps an epoch (halving the images from 320 took ~45 s off the default suite).
TINY = [
    "data=synthetic",
    "data.train_size=160",
    "data.test_size=100",
    "data.val_split=0.01",  # of the full 10,000 synthetic train images: 100 val images
    "data.image_size=16",
    "trainer.batch_size=32",
    "trainer.eval_batch_size=100",
    "trainer.epochs=2",
    "trainer.log_every=2",
]
# At 16 px a training step of resnet8 takes 0.018 s on one core, cnn_student's 0.034 (0.063 and
# 0.139 at the set's 32 px; measured on this kind).
FAST = ["model=resnet8", *TINY, "trainer.deterministic=true"]
# From the milestone on, the lr is multiplied by 1e30: the weights blow up at that step.
BLOW_UP = ["sched=multistep", "sched.gamma=1e30"]
FOLDER_RUN = [
    "data=imagefolder",
    "data.image_size=16",
    "data.val_split=0",
    "trainer.batch_size=4",
    "trainer.epochs=1",
    "model=resnet8",
]


# The torch threads of each command: this test process's share of the cores. Two
# pytest-xdist workers at torch's default of a thread per core run four threads on two cores,
# and tiny CPU runs then spend most of their time waiting on each other (4.7x the CPU time per
# run, measured on the 2-core CI kind under load).
THREADS = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
# What every kdlab command sees in the environment, as the console script would run it.
COMMAND_ENV = {"PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": str(THREADS)}
# A fresh interpreter's warning filters (Python's defaults, no -W): pytest's are not a user's.
FRESH_WARNING_FILTERS = [
    ("default", DeprecationWarning, "__main__"),
    ("ignore", DeprecationWarning, ""),
    ("ignore", PendingDeprecationWarning, ""),
    ("ignore", ImportWarning, ""),
    ("ignore", ResourceWarning, ""),
]


def command_env(env: dict[str, str] | None) -> dict[str, str]:
    """The environment a command runs in: ours, COMMAND_ENV, `env`, and never KDLAB_DEBUG."""
    environment = {**os.environ, **COMMAND_ENV, **(env or {})}
    environment.pop("KDLAB_DEBUG", None)
    return environment


def run_kdlab(
    *args: str, cwd: Path, env: dict[str, str] | None = None, fresh_process: bool = False
) -> subprocess.CompletedProcess:
    """`kdlab ARGS` in `cwd` (`env`: extra variables), through the console script's entry point
    in this process, isolated as if it were a process of its own (see `isolated_command`);
    `fresh_process=True` where the process itself is under test (exit status, signals)."""
    if fresh_process:
        return run_kdlab_process(*args, cwd=cwd, env=env)
    argv = [sys.executable, "-m", "kdlab", *args]
    with isolated_command(cwd, command_env(env)) as output:
        try:
            main(list(args))
            code = 0
        except SystemExit as stop:  # what the interpreter makes of it at exit
            code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
            if not isinstance(stop.code, int | None):
                print(stop.code, file=sys.stderr)
        except BaseException:  # uncaught: a traceback and exit status 1, as at top level
            traceback.print_exc()
            code = 1
    return subprocess.CompletedProcess(argv, code, output.stdout, output.stderr)


def run_kdlab_process(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`python -m kdlab ARGS` in a fresh interpreter in `cwd`, waited for however long it takes."""
    return subprocess.run(
        [sys.executable, "-m", "kdlab", *args],
        cwd=cwd,
        env=command_env(env),
        capture_output=True,
        text=True,
    )


@dataclass
class Output:
    """What a command wrote to file descriptors 1 and 2 (set when it ends)."""

    stdout: str = ""
    stderr: str = ""


@contextlib.contextmanager
def captured_output() -> Iterator[Output]:
    """File descriptors 1 and 2, and sys.stdout/stderr over them, into temp files: a command's
    prints, its logging and its child processes' output, as a pipe would catch them."""
    output = Output()
    sys.stdout.flush()
    sys.stderr.flush()
    streams, saved_fds = (sys.stdout, sys.stderr), (os.dup(1), os.dup(2))
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        sys.stdout = open(1, "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stderr = open(  # noqa: SIM115
            2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False
        )
        try:
            yield output
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            sys.stdout, sys.stderr = streams
            for fd, saved in zip((1, 2), saved_fds, strict=True):
                os.dup2(saved, fd)
                os.close(saved)
            output.stdout, output.stderr = read_back(out), read_back(err)


def read_back(file: IO[bytes]) -> str:
    file.seek(0)
    return file.read().decode("utf-8", errors="replace")


def show_on_stderr(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    """Print a warning as the interpreter does, on the (captured) sys.stderr of the moment."""
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@contextlib.contextmanager
def fresh_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.resetwarnings()
        for action, category, module in FRESH_WARNING_FILTERS:
            warnings.filterwarnings(action, category=category, module=module, append=True)
        warnings.showwarning = show_on_stderr
        yield


@contextlib.contextmanager
def restored_logging() -> Iterator[None]:
    """Every logger's handlers, level and flags as they were: the handlers a command's Hydra
    logging added (console, the run's log file) are closed and removed after it."""
    manager = logging.Logger.manager

    def loggers() -> list[logging.Logger]:
        named = [v for v in manager.loggerDict.values() if isinstance(v, logging.Logger)]
        return [logging.getLogger(), *named]

    saved = {lg: (lg.handlers[:], lg.level, lg.propagate, lg.disabled) for lg in loggers()}
    disabled = manager.disable
    try:
        yield
    finally:
        for logger in loggers():
            handlers, level, propagate, off = saved.get(logger, ([], logging.NOTSET, True, False))
            for handler in logger.handlers:
                if handler not in handlers:
                    handler.close()
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate, logger.disabled = propagate, off
        logging.disable(disabled)


@contextlib.contextmanager
def restored_torch() -> Iterator[None]:
    """torch's, NumPy's and Python's global state a run sets (threads, determinism, dtype,
    generators), at a fresh interpreter's values during the command and ours after it."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    flags = (cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32, matmul.allow_tf32)
    deterministic = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    threads, dtype = torch.get_num_threads(), torch.get_default_dtype()
    generators = (torch.get_rng_state(), random.getstate(), np.random.get_state())
    torch.set_num_threads(THREADS)  # as OMP_NUM_THREADS sets it in a fresh one
    torch.use_deterministic_algorithms(False)
    torch.set_default_dtype(torch.float32)
    try:
        yield
    finally:
        cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32, matmul.allow_tf32 = flags
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
        torch.set_num_threads(threads)
        torch.set_default_dtype(dtype)
        torch.set_rng_state(generators[0])
        random.setstate(generators[1])
        np.random.set_state(generators[2])


# The config groups whose options plugins add to (kdlab.runs.config.register_configs).
PLUGIN_GROUPS = ("model", "data", "loss")


@contextlib.contextmanager
def restored_hydra() -> Iterator[None]:
    """Hydra's singletons (the run's HydraConfig, the initialised GlobalHydra, the options a
    plugin added to the config groups) and OmegaConf's resolvers as they were."""
    store = ConfigStore.instance()
    groups = {group: dict(store.repo[group]) for group in PLUGIN_GROUPS if group in store.repo}
    resolvers = dict(BaseContainer._resolvers)
    per_run = {cls: Singleton._instances.get(cls) for cls in (HydraConfig, JobRuntime)}
    try:
        yield
    finally:
        GlobalHydra.instance().clear()
        for group in PLUGIN_GROUPS:
            store.repo.pop(group, None)
        store.repo.update(groups)
        for cls, instance in per_run.items():
            Singleton._instances.pop(cls, None)
            if instance is not None:
                Singleton._instances[cls] = instance
        BaseContainer._resolvers = resolvers


@contextlib.contextmanager
def restored_kdlab(env: dict[str, str]) -> Iterator[None]:
    """kdlab's per-process state: the plugins (loaded anew from `env`, their modules and
    registrations removed after), the pre-flight's configs and the run dirs' locks (closed,
    as at a process's end, so a later command can lock the same dir)."""
    registries = (METHODS, MODELS, DATASETS, preflight._CHECKED)
    saved = [dict(registry) for registry in registries]
    held, modules, path = set(run_dir._HELD), set(sys.modules), sys.path[:]
    plugin_paths = [Path(p).absolute() for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:0] = [str(p) for p in plugin_paths]  # as the interpreter starts up with it
    importlib.invalidate_caches()
    load_plugins.cache_clear()
    try:
        yield
    finally:
        for registry, entries in zip(registries, saved, strict=True):
            registry.clear()
            registry.update(entries)
        for key in set(run_dir._HELD) - held:
            os.close(run_dir._HELD.pop(key))
        sys.path[:] = path
        places = [Path.cwd(), *plugin_paths]
        named = set(env.get("KDLAB_PLUGINS", "").replace(" ", "").split(","))
        for name in set(sys.modules) - modules:
            file = getattr(sys.modules[name], "__file__", None) or ""
            if name in named or any(Path(file).is_relative_to(p) for p in places if file):
                del sys.modules[name]
        load_plugins.cache_clear()


@contextlib.contextmanager
def isolated_command(cwd: Path, env: dict[str, str]) -> Iterator[Output]:
    """Run a command in this process as if in its own: in `cwd`, with exactly `env` as its
    environment and its own sys.argv, its output captured, and everything it changes in the
    process (see the restored_* managers) put back after it."""
    environ, argv, previous_dir = dict(os.environ), sys.argv[:], Path.cwd()
    os.chdir(cwd)
    set_environ(env)
    try:
        with (
            captured_output() as output,
            fresh_warnings(),
            restored_logging(),
            restored_torch(),
            restored_hydra(),
            restored_kdlab(env),
        ):
            yield output
    finally:
        set_environ(environ)
        sys.argv[:] = argv
        os.chdir(previous_dir)


def set_environ(variables: dict[str, str]) -> None:
    """Make os.environ exactly `variables` (changing only what differs)."""
    for name in set(os.environ) - set(variables):
        del os.environ[name]
    for name, value in variables.items():
        if os.environ.get(name) != value:
            os.environ[name] = value


def succeeded(proc: subprocess.CompletedProcess) -> None:
    """A set-up run must succeed: anything else is a bug, shown with kdlab's stderr."""
    if proc.returncode != 0:
        command = " ".join(proc.args[3:])
        raise RuntimeError(f"kdlab {command} exited {proc.returncode}: {proc.stderr}")


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def train_one_epoch(cwd: Path) -> Path:
    """A finished 1-epoch run of FAST in cwd/run."""
    proc = run_kdlab("train", *FAST, "trainer.epochs=1", "hydra.run.dir=run", cwd=cwd)
    succeeded(proc)
    return cwd / "run"


def resume_one_more_epoch(
    run: Path, file_size_limit: int | None = None
) -> subprocess.CompletedProcess:
    """Continue a 1-epoch run for a second epoch, optionally under RLIMIT_FSIZE (in a process
    of its own: the limit is the process's)."""
    args = ["train", *FAST, "resume=true", f"hydra.run.dir={run}"]
    if file_size_limit is None:
        return run_kdlab(*args, cwd=run.parent)
    return run_kdlab_limited(*args, cwd=run.parent, file_size_limit=file_size_limit)


def run_kdlab_limited(*args: str, cwd: Path, file_size_limit: int) -> subprocess.CompletedProcess:
    """`kdlab ARGS` in a fresh interpreter that may write no file past `file_size_limit`
    bytes (RLIMIT_FSIZE: the kernel's own limit, a disk that is full for this process)."""

    def limit_file_size() -> None:
        # Python ignores SIGXFSZ, so a write past the limit fails with EFBIG (an OSError).
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run(
        [sys.executable, "-m", "kdlab", *args],
        cwd=cwd,
        env=command_env(None),
        capture_output=True,
        text=True,
        preexec_fn=limit_file_size,
    )


class RunsCode:
    """Unpickling this runs a shell command: what a crafted checkpoint would do to its user."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return (os.system, (self.command,))


@dataclass(frozen=True)
class Workspace:
    """What the bad inputs refer to, built once in `root` (every run's working dir)."""

    root: Path
    abc: Path  # image folder, classes a, b, c
    ab: Path  # classes a, b
    abd: Path  # classes a, b, d
    broken: Path  # classes a, b; one train "image" is not one
    empty: Path  # an existing, empty directory
    teacher: Path  # a finished resnet8 run on `abc`
    truncated: Path  # the first KiB of the teacher's checkpoint
    crafted: Path  # a "checkpoint" whose unpickling would create root/MARKER
    regular_file: Path
    one_class: Path  # an image folder of class a only
    bad_summary: Path  # a run dir whose summary.json has test_acc "high"
    two_class_teacher: Path  # the teacher's checkpoint, relabelled as a 2-class (a, b) one


def build_workspace(root: Path) -> Workspace:
    """The files every bad input refers to, and the finished teacher run (one tiny training)."""
    ws = Workspace(
        root=root,
        abc=write_image_folder(root / "abc", ("a", "b", "c")),
        ab=write_image_folder(root / "ab", ("a", "b")),
        abd=write_image_folder(root / "abd", ("a", "b", "d")),
        broken=write_image_folder(root / "broken", ("a", "b")),
        empty=root / "empty",
        teacher=root / "teacher",
        truncated=root / "truncated.pt",
        crafted=root / "crafted.pt",
        regular_file=root / "a_file",
        one_class=write_image_folder(root / "one_class", ("a",)),
        bad_summary=root / "bad_summary",
        two_class_teacher=root / "two_classes.pt",
    )
    ws.bad_summary.mkdir()
    (ws.bad_summary / "summary.json").write_text('{"command": "train", "test_acc": "high"}\n')
    torch.save({"model": RunsCode(f"touch {root / 'MARKER'}"), "config": {}}, ws.crafted)
    (ws.broken / "train" / "b" / "5.png").write_bytes(b"not a png")
    ws.empty.mkdir()
    ws.regular_file.write_text("not a directory\n")
    proc = run_kdlab(
        "train", *FOLDER_RUN, f"data.root={ws.abc}", f"hydra.run.dir={ws.teacher}", cwd=root
    )
    succeeded(proc)
    ws.truncated.write_bytes((ws.teacher / "checkpoints" / "best.pt").read_bytes()[:1024])
    relabelled = Checkpoint.read(ws.teacher / "checkpoints" / "best.pt")
    relabelled.num_classes, relabelled.class_names = 2, ["a", "b"]
    relabelled.write(ws.two_class_teacher)
    return ws

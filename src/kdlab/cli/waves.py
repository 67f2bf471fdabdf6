"""A study's runs as waves of Hydra jobs: teachers first, then the runs that need them.

Each wave's runs of one command are handed to the launcher the user names
(`hydra/launcher=basic|joblib|submitit_local|submitit_slurm`, with its `hydra.launcher.*`
settings) as one multirun: one job override list per run, its dir set by `hydra.sweep.dir`
(the study dir) and `hydra.sweep.subdir` (the run's dir below it), so every launcher writes
the runs where the study's report looks for them. What happened to a run is read back from
its dir, not from the launcher, so a rerun of the study skips the finished runs and resumes
the interrupted ones whichever launcher ran them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

from kdlab.cli.commands.study_jobs import WaveJob
from kdlab.cli.launchers import check_launcher
from kdlab.cli.main import prepare_hydra, run_recording_failure
from kdlab.errors import KdlabError
from kdlab.paths import config_dir
from kdlab.runs.failed_run import SUMMARY
from kdlab.runs.plugins import load_plugins


@dataclass(frozen=True)
class CommandTask:
    """The task function of a study's jobs: the command's run on the job's config, in the
    study's working dir (`cwd`: a relative data.root means the same wherever it runs; joblib
    reuses its worker processes, started elsewhere). Picklable (the joblib and submitit
    launchers run it in other processes), and a failure is an exception, which Hydra records
    in the job's return, not an exit of the whole study."""

    command: str
    cwd: str

    def __call__(self, cfg: Any) -> Any:
        os.chdir(self.cwd)
        load_plugins()  # a fresh worker process: the plugins' models and data sets
        task = import_module(f"kdlab.cli.commands.{self.command}").run
        return run_recording_failure(task, cfg, None)


def run_state(run_dir: Path) -> str:
    """done | failed (its summary says so) | partial (a checkpoint to resume) | new."""
    import json

    try:
        status = json.loads((run_dir / SUMMARY).read_text()).get("status")
    except (OSError, ValueError):
        status = None
    if status is not None:
        return "done" if status == "finished" else "failed"
    return "partial" if (run_dir / "checkpoints" / "last.pt").is_file() else "new"


def waves(jobs: Sequence[WaveJob]) -> list[list[WaveJob]]:
    """The jobs by dependency depth: those that need no run of the plan, then those that need
    only runs of the waves before, ... (a need outside the plan is a given checkpoint)."""
    planned = {job.sub: job for job in jobs}
    depth: dict[str, int] = {}

    def depth_of(job: WaveJob) -> int:
        if job.sub not in depth:
            needs = [planned[sub] for sub in job.needs if sub in planned]
            depth[job.sub] = 1 + max(map(depth_of, needs), default=-1)
        return depth[job.sub]

    levels: list[list[WaveJob]] = []
    for job in jobs:
        level = depth_of(job)
        levels.extend([] for _ in range(level + 1 - len(levels)))
        levels[level].append(job)
    return levels


def quoted(value: object) -> str:
    """A value Hydra's override parser reads as one string (paths with spaces, commas)."""
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def job_overrides(job: WaveJob, study_dir: Path) -> list[str]:
    resume = ["resume=true"] if (study_dir / job.sub / "checkpoints" / "last.pt").is_file() else []
    return [*job.args, *resume, f"hydra.sweep.subdir={quoted(job.sub)}"]


def launch(command: str, jobs: Sequence[WaveJob], study_dir: Path, launcher: Sequence[str]) -> list:
    """One Hydra multirun of `command`'s jobs through the named launcher; their JobReturns."""
    from hydra import initialize_config_dir
    from hydra._internal.callbacks import Callbacks
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.plugins import Plugins
    from hydra.core.utils import JobReturn
    from hydra.errors import HydraException
    from hydra.types import HydraContext, RunMode
    from omegaconf.errors import OmegaConfBaseException

    from kdlab.runs.preflight import composition_message

    prepare_hydra(set())
    overrides = [*launcher, f"hydra.sweep.dir={quoted(study_dir)}"]
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir()), job_name=command):
        hydra = GlobalHydra.instance().hydra
        assert hydra is not None
        try:
            cfg = hydra.compose_config(
                command, overrides, run_mode=RunMode.MULTIRUN, with_log_configuration=False
            )
        except (HydraException, OmegaConfBaseException) as error:
            raise KdlabError(f"the launcher's settings: {composition_message(error)}") from error
        # A study's jobs are no user sweep: no callbacks (the sweep summary stays out).
        context = HydraContext(config_loader=hydra.config_loader, callbacks=Callbacks())
        runner = Plugins.instance().instantiate_launcher(
            config=cfg, hydra_context=context, task_function=CommandTask(command, os.getcwd())
        )
        try:
            returns = runner.launch([job_overrides(job, study_dir) for job in jobs], 0)
        except Exception as error:  # e.g. submitit: a job's process died; the dirs tell
            print(f"== the {hydra_launcher_name(cfg)} launcher: {error}", flush=True)
            returns = []
    return [r for r in returns if isinstance(r, JobReturn)]


def hydra_launcher_name(cfg: Any) -> str:
    target = str(cfg.hydra.launcher.get("_target_", "launcher"))
    return target.rsplit(".", 1)[-1]


def failure(job: WaveJob, run_dir: Path, returned: Any) -> str:
    """Why a launched job did not finish, with the log to read."""
    log = run_dir / f"{job.command}.log"
    error = getattr(returned, "_return_value", None)
    reason = str(error).strip().splitlines()[-1] if isinstance(error, BaseException) else ""
    where = f"log: {log}" if log.is_file() else f"no log in {run_dir}"
    return f"failed ({reason}; {where})" if reason else f"failed ({where})"


def run_waves(jobs: Sequence[WaveJob], study_dir: Path, launcher: Sequence[str]) -> dict[str, str]:
    """Run every job not finished yet, wave by wave; returns each run that did not finish
    and why (failed, with its log; or not run, with the run it needed)."""
    check_launcher(launcher)
    unfinished: dict[str, str] = {}
    for wave in waves(jobs):
        todo: dict[str, list[WaveJob]] = {}
        for job in wave:
            state = run_state(study_dir / job.sub)
            blocked = [sub for sub in job.needs if sub in unfinished]
            if state == "done":
                print(f"== {job.sub}: finished already, kept", flush=True)
            elif state == "failed":
                unfinished[job.sub] = "failed earlier (delete its dir to retry)"
                print(f"== {job.sub}: {unfinished[job.sub]}", flush=True)
            elif blocked:
                unfinished[job.sub] = f"not run: {blocked[0]} did not finish"
                print(f"== {job.sub}: {unfinished[job.sub]}", flush=True)
            else:
                todo.setdefault(job.command, []).append(job)
                how = "resumed" if state == "partial" else "kdlab"
                print(f"== {job.sub}: {how} {job.command} {' '.join(job.args)}", flush=True)
        for command, batch in todo.items():
            returned = by_run_dir(launch(command, batch, study_dir, launcher))
            for job in batch:
                run_dir = study_dir / job.sub
                if run_state(run_dir) != "done":
                    unfinished[job.sub] = failure(
                        job, run_dir, returned.get(str(run_dir.absolute()))
                    )
                    print(f"== {job.sub}: {unfinished[job.sub]}", flush=True)
    return unfinished


def by_run_dir(returns: Sequence[Any]) -> dict[str, Any]:
    """The launcher's JobReturns by the run dir each job wrote."""
    return {
        str(r.hydra_cfg.hydra.runtime.output_dir): r for r in returns if r.hydra_cfg is not None
    }


def unfinished_line(unfinished: dict[str, str], total: int, study_dir: Path) -> str:
    """The study's closing error: how many runs did not finish, the first few, what to do."""
    shown = "; ".join(f"{sub} {why}" for sub, why in list(unfinished.items())[:3])
    more = f"; and {len(unfinished) - 3} more" if len(unfinished) > 3 else ""
    return (
        f"{len(unfinished)} of {total} runs did not finish ({shown}{more}): fix them and "
        f"rerun the same command with --out {study_dir}"
    )

"""`kdlab <command> ...`: pick the command, run the pre-flight, hand argv to Hydra.

Hydra owns argv after the command name. Before handing over, every job's config is
composed and checked once (kdlab.runs.preflight), so a typo fails before anything is
written, with one line and exit code 2. torch is imported only after the mistakes the
overrides show by themselves had their torch-free check (an unknown command;
kdlab.runs.screen: an unknown group option, a value out of its own range or against other
known keys): those answer in under half a second, the rest in 3-4 s. Under torchrun this is
also where the ranks join the process group and agree on one run dir.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from kdlab.cli.commands.study_jobs import study_names
from kdlab.errors import KdlabError
from kdlab.paths import NO_SPACE
from kdlab.runs.plugins import load_plugins
from kdlab.version import __version__

if TYPE_CHECKING:
    from kdlab.runs.failed_run import Launch

EXIT_USAGE = 2


@dataclass(frozen=True)
class Command:
    """A subcommand: kdlab.cli.commands.<name> has run(cfg) (Hydra) or main(argv) (plain)."""

    summary: str
    hydra: bool = True
    # The names the command takes, read where they are defined and listed after the summary.
    names: Callable[[], Sequence[str]] | None = None

    def line(self) -> str:
        return f"{self.summary}: {', '.join(self.names())}" if self.names else self.summary


COMMANDS: dict[str, Command] = {
    "train": Command("train one model with cross-entropy (teacher or baseline)"),
    "distill": Command("train a student against a frozen teacher (loss=kd T=4 alpha=0.1)"),
    "fitnet": Command("FitNets: hint stage, then KD (stage2=frozen|finetune)"),
    "study": Command("a note's study or the CIFAR-100 grid", hydra=False, names=study_names),
    "report": Command("tables and figures across finished runs and sweeps", hydra=False),
    "models": Command("list the models with parameter counts and feature points", hydra=False),
    "export": Command("a run's model as ONNX, TorchScript or safetensors, checked", hydra=False),
    "predict": Command("top-k classes of image files by a run's model", hydra=False),
}

# Hydra flags that only print something; the overrides need no check then.
_INFO_FLAGS = {"-h", "--help", "--hydra-help", "-i", "--info", "-sc", "--shell-completion"}
# Hydra flags that take a value (the next argument is not an override).
_VALUE_FLAGS = {"-c", "--cfg", "-p", "--package", "--experimental-rerun"}
# Flags that change where configs come from: the check would compose the wrong config.
_SOURCE_FLAGS = {"-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir"}
_RUN_FLAGS = {"-m", "--multirun", "-r", "--run", "--resolve"}


def fail(message: str) -> NoReturn:
    """Print a one-line error and exit with the usage code."""
    print(f"kdlab: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [
        f"kdlab {__version__}: a config-driven lab for knowledge distillation",
        "",
        "usage: kdlab <command> [key=value ...] [hydra flags]",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {c.line()}" for name, c in COMMANDS.items()]
    lines += [
        "",
        "Each training command is a Hydra app: `kdlab train --help` lists its config groups,",
        "`kdlab train --cfg job` prints the composed config, `-m key=a,b` sweeps.",
    ]
    return "\n".join(lines)


def split_hydra_args(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separate Hydra's flags (with their values) from the key=value overrides."""
    flags: list[str] = []
    overrides: list[str] = []
    expect_value = False
    for arg in args:
        if expect_value:
            flags.append(arg)
            expect_value = False
        elif arg.startswith("-"):
            flags.append(arg)
            expect_value = arg in _VALUE_FLAGS | _SOURCE_FLAGS
        else:
            overrides.append(arg)
    return flags, overrides


def check_flags(command: str, args: Sequence[str]) -> None:
    """A flag Hydra does not know (`--epochs 3`) was meant as an override: say how to write it."""
    from kdlab.runs.suggest import flag_hint

    known = _INFO_FLAGS | _VALUE_FLAGS | _SOURCE_FLAGS | _RUN_FLAGS
    for i, arg in enumerate(args):
        if arg.startswith("-") and arg.split("=", 1)[0] not in known:
            following = args[i + 1] if i + 1 < len(args) and "=" not in args[i + 1] else None
            raise KdlabError(flag_hint(command, arg, following))


def sweep_subdir_resolver(swept: set[str]) -> Callable[[Any], str]:
    """Name a sweep job's dir by its swept overrides only (`T=4,alpha=0.1`), not all of them."""

    def name(task_overrides: Any) -> str:
        parts = [o for o in task_overrides if o.split("=", 1)[0].lstrip("+~") in swept]
        return ",".join(parts).replace("/", "_") or "job"

    return name


def group_listing(*groups: str) -> str:
    """`--help`'s config groups: only those the command uses (its template names them), each
    with the options Hydra would accept."""
    from hydra.core.global_hydra import GlobalHydra

    loader = GlobalHydra.instance().config_loader()
    return "\n".join(f"{g}: {', '.join(loader.get_group_options(g))}" for g in groups)


def check_torchrun_flags(flags: list[str]) -> None:
    """Refuse what one process group cannot run: sweeps, and configs the ranks cannot share."""
    if {"-m", "--multirun"} & set(flags):
        fail(
            "-m (--multirun) is not supported under torchrun: start one torchrun per job, or "
            "sweep with a Hydra launcher plugin (e.g. hydra/launcher=submitit_slurm)"
        )
    source = sorted(set(flags) & _SOURCE_FLAGS)
    if source:
        fail(f"{source[0]} is not supported under torchrun: give the settings as key=value")


def resolved_run_dir(command: str, overrides: list[str]) -> str:
    """hydra.run.dir as this process resolves it now (the user's, else the configured one)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from kdlab.paths import config_dir
    from kdlab.runs.preflight import composition_message

    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
            cfg = compose(config_name=command, overrides=overrides, return_hydra_config=True)
            return str(OmegaConf.select(cfg, "hydra.run.dir"))
    except (HydraException, OmegaConfBaseException) as error:
        fail(f"cannot resolve hydra.run.dir: {composition_message(error)}")


def rank_args(command: str, args: list[str], overrides: list[str]) -> list[str]:
    """This rank's argv: rank 0's run dir for all (each would resolve `${now:...}` by itself),
    and no Hydra record or log file from ranks other than 0."""
    from kdlab.engine.distributed import broadcast_str, is_main

    run_dir = broadcast_str(resolved_run_dir(command, overrides) if is_main() else "")
    quoted = run_dir.replace("'", "\\'")
    kept = [a for a in args if a.split("=", 1)[0].lstrip("+~") != "hydra.run.dir"]
    extra = [f"hydra.run.dir='{quoted}'"]
    if not is_main():
        extra += ["hydra.output_subdir=null", "hydra/job_logging=disabled"]
    return [*kept, *extra]


def prepare_hydra(swept: set[str]) -> None:
    """What composing kdlab's configs needs: its resolvers and structured configs."""
    from omegaconf import OmegaConf

    from kdlab.runs.config import register_configs

    OmegaConf.register_new_resolver("kdlab_swept", sweep_subdir_resolver(swept), replace=True)
    OmegaConf.register_new_resolver("kdlab_groups", group_listing, replace=True)
    register_configs()


def run_hydra_command(command: str, args: list[str]) -> None:
    """Hand argv to Hydra with the command's primary config; errors become one line.

    Under torchrun the ranks join the process group first and leave it when the command ends.
    """
    from kdlab.runs.screen import screen_overrides

    check_flags(command, args)
    flags, overrides = split_hydra_args(args)
    runs = not set(flags) & _INFO_FLAGS
    if runs and not set(flags) & _SOURCE_FLAGS:
        screen_overrides(command, overrides)  # before torch is imported (below)

    import hydra
    from omegaconf import DictConfig

    from kdlab.cli.launchers import check_launcher
    from kdlab.engine.distributed import process_group, world_size
    from kdlab.paths import config_dir
    from kdlab.runs.failed_run import Launch
    from kdlab.runs.preflight import check_overrides

    distributed = runs and world_size() > 1
    if distributed:
        check_torchrun_flags(flags)
    swept: set[str] = set()
    launch = None  # single runs: what existed before anything was written
    if runs and not set(flags) & _SOURCE_FLAGS:
        multirun = bool({"-m", "--multirun"} & set(flags))
        check_launcher(overrides)
        checked = check_overrides(command, overrides, multirun)
        swept, launch = checked.swept, checked.launch
    prepare_hydra(swept)
    task: Callable[[DictConfig], Any] = import_module(f"kdlab.cli.commands.{command}").run

    single = runs and not distributed and not swept and not {"-m", "--multirun"} & set(flags)
    if not single:
        launch = None
    elif launch is None:
        launch = Launch.before(Path(resolved_run_dir(command, overrides)))

    @hydra.main(version_base="1.3", config_path=str(config_dir()), config_name=command)
    def hydra_task(cfg: DictConfig) -> Any:
        return run_reporting_errors(task, cfg, launch)

    if not distributed:
        sys.argv = [f"kdlab {command}", *args]
        run_hydra_task(hydra_task, launch)
        return
    with process_group():
        sys.argv = [f"kdlab {command}", *rank_args(command, args, overrides)]
        run_hydra_task(hydra_task, launch)


def run_hydra_task(hydra_task: Callable[[], Any], launch: Launch | None) -> None:
    """Run the Hydra app with its errors raised here rather than printed by Hydra: a write
    that fails before the task starts (Hydra's record .hydra/ on a full disk) removes what
    this command created and is one line."""
    from kdlab.runs.failed_run import discard_untrained

    previous = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing and exit 1
    try:
        hydra_task()
    except KdlabError:  # only debug=true lets one out of the task: its traceback, as asked
        traceback.print_exc()
        raise SystemExit(1) from None
    except OSError as error:
        run_dir = launch.run_dir if launch is not None else None  # Hydra's is reset by now
        if launch is not None:
            discard_untrained(launch.run_dir, launch)
        if error.errno not in NO_SPACE:
            raise
        where = error.filename or run_dir or "the run dir"
        raise KdlabError(
            f"cannot write {where} ({error.strerror}): free some disk space or pick another "
            "hydra.run.dir (nothing of this run was kept)"
        ) from error
    finally:
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous


def run_recording_failure(task: Callable[[Any], Any], cfg: Any, launch: Launch | None) -> Any:
    """Run a command on the job's checked, typed config. A failed run leaves no dir if it
    failed before training, else its dir marked failed; the error goes on."""
    from kdlab.runs.failed_run import record_failure
    from kdlab.runs.preflight import checked_config
    from kdlab.runs.session import hydra_run_info

    try:
        return task(checked_config(cfg))
    except Exception as error:
        record_failure(cfg, hydra_run_info()[0], launch, error)
        raise


def run_reporting_errors(task: Callable[[Any], Any], cfg: Any, launch: Launch | None) -> Any:
    """`run_recording_failure`, a KdlabError becoming one line and exit 2 unless debug=true."""
    try:
        return run_recording_failure(task, cfg, launch)
    except KdlabError as error:
        if cfg.get("debug", False):
            raise
        fail(str(error))


def completion_args(args: list[str]) -> list[str]:
    """Hydra's bash completion (`eval "$(kdlab train -sc install=bash)"`) runs
    `kdlab -sc query=bash` with the typed line in COMP_LINE: take the command from that line
    and hand Hydra the line without it, so it completes that command's groups and keys."""
    words = os.environ.get("COMP_LINE", "").split(" ")
    if len(words) < 2 or words[1] not in COMMANDS or not COMMANDS[words[1]].hydra:
        return args
    os.environ["COMP_LINE"] = " ".join([words[0], *words[2:]])
    return [words[1], *args]


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-sc", "--shell-completion"):
        args = completion_args(args)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return
    if args[0] == "--version":
        print(f"kdlab {__version__}")
        return
    name, rest = args[0], args[1:]
    command = COMMANDS.get(name)
    if command is None:
        fail(f"unknown command '{name}': choose one of {', '.join(COMMANDS)} (kdlab --help)")
    try:
        load_plugins()  # their models and data sets are choices of every command
        if command.hydra:
            run_hydra_command(name, rest)
        else:
            import_module(f"kdlab.cli.commands.{name}").main(rest)
    except KdlabError as error:
        fail(str(error))
    except KeyboardInterrupt:
        print("kdlab: interrupted", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()

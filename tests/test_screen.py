"""The CLI's torch-free screen (kdlab.runs.screen, and the argv checks of export, predict and
study): every catalogue row marked `screened` is refused by the entry point with its one line
and exit code 2 before torch is imported.

The rows run in one fresh interpreter (this one has imported torch and the registries, which
make the screen leave the registries' groups to the pre-flight), one after another through
`kdlab.cli.main.main`, as the console script calls it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import typing
from pathlib import Path
from types import SimpleNamespace

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from catalogue import CATALOGUE
from harness import command_env
from kdlab.cli.commands.export import FORMAT_NAMES
from kdlab.cli.main import COMMANDS
from kdlab.deploy import FORMATS
from kdlab.errors import KdlabError
from kdlab.paths import config_dir
from kdlab.runs.config import register_configs
from kdlab.runs.preflight import check_overrides, compose_config
from kdlab.runs.schema import DistillConfig
from kdlab.runs.screen import (
    DISTILL_NUMBERS,
    RUN_NUMBERS,
    screen_overrides,
    without_accelerators,
)
from kdlab.runs.suggest import config_keys, dotted_keys

SCREENED = [
    case
    for case in CATALOGUE
    if case.screened and (without_accelerators() or not case.screened_without_gpu)
]

# Each argv of the JSON list in sys.argv[1] through the entry point; prints a JSON list of
# [exit code, stderr] and, last, whether torch was imported.
RUN_EACH = """
import contextlib, io, json, sys
from kdlab.cli.main import main
results = []
for argv in json.loads(sys.argv[1]):
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            main(argv)
            code = 0
        except SystemExit as stop:
            code = stop.code
    results.append([code, stderr.getvalue()])
print(json.dumps([results, "torch" in sys.modules]))
"""


def screened_lines(tmp_path: Path) -> tuple[list[tuple[list[str], int, str]], bool]:
    """(argv, exit code, stderr) of every screened row, and whether torch was imported."""
    regular_file = tmp_path / "a_file"
    regular_file.write_text("not a directory\n")
    teacher = tmp_path / "teacher"  # what export and predict see of a run before torch reads it
    (teacher / "checkpoints").mkdir(parents=True)
    (teacher / "checkpoints" / "best.pt").write_bytes(b"")
    (teacher / "summary.json").write_text("{}\n")
    (tmp_path / "empty").mkdir()
    # What the screened rows read of a harness.Workspace.
    workspace = SimpleNamespace(
        root=tmp_path,
        regular_file=regular_file,
        teacher=teacher,
        empty=tmp_path / "empty",
        abc=tmp_path / "abc",
    )
    argvs = [with_run_dir(case.args(workspace), tmp_path / "run") for case in SCREENED]
    proc = subprocess.run(
        [sys.executable, "-c", RUN_EACH, json.dumps(argvs)],
        cwd=tmp_path,
        env=command_env(None),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    results, torch_imported = json.loads(proc.stdout)
    return [(argv, code, err) for argv, (code, err) in zip(argvs, results, strict=True)], (
        torch_imported
    )


def with_run_dir(argv: list[str], run_dir: Path) -> list[str]:
    """A training command's argv with hydra.run.dir in `run_dir` (which must stay unmade)."""
    return [*argv, f"hydra.run.dir={run_dir}"] if COMMANDS[argv[0]].hydra else argv


def test_every_screened_row_is_refused_in_one_line_before_torch_is_imported(tmp_path):
    assert len(SCREENED) >= 30
    results, torch_imported = screened_lines(tmp_path)
    for case, (argv, code, stderr) in zip(SCREENED, results, strict=True):
        assert code == 2, f"{argv}: exit {code}, {stderr}"
        assert stderr.startswith("kdlab: error: ") and stderr.count("\n") == 1, (argv, stderr)
        for fragment in case.fragments:
            assert fragment in stderr, (argv, stderr)
    assert not torch_imported
    assert not (tmp_path / "run").exists()


def test_the_export_commands_format_names_are_the_formats():
    """`kdlab export --format`'s choices, known before torch's import, are kdlab.deploy's."""
    assert tuple(FORMATS) == FORMAT_NAMES


def test_the_screens_types_are_the_schemas():
    """The screen types seed, T and alpha as kdlab.runs.schema's DistillConfig does."""
    hints = typing.get_type_hints(DistillConfig)
    assert {key: hints[key] for key in {**RUN_NUMBERS, **DISTILL_NUMBERS}} == {
        **RUN_NUMBERS,
        **DISTILL_NUMBERS,
    }


def test_a_registry_s_group_is_left_to_the_pre_flight_once_a_plugin_could_extend_it():
    """A plugin registers through its registry's module, imported before the screen runs (as
    in this process): then a name the built-ins lack may be the plugin's."""
    assert {"kdlab.models.registry", "kdlab.data.registry", "kdlab.methods.base"} <= set(
        sys.modules
    )
    screen_overrides("distill", ["model=tiny_net", "data=stripes", "loss=mse_logits"])
    with pytest.raises(KdlabError, match="unknown optim 'nosuch'"):
        screen_overrides("distill", ["optim=nosuch"])  # no plugin adds an optimiser


@pytest.mark.parametrize("command", ["train", "distill", "fitnet"])
def test_the_hints_keys_are_the_composed_configs(command):
    """The did-you-mean hints offer config_keys, made torch-free from the run schemas, the
    default options and kdlab.runs.schema.METHOD_SETTINGS: the keys Hydra composes."""
    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
        composed = OmegaConf.to_container(compose(config_name=command), resolve=False)
    assert config_keys(command) == list(dotted_keys(composed))


@pytest.mark.parametrize(
    "overrides",
    [
        ["optim=dot", "optim.delta=0.2"],
        ["sched.warmup_epochs=40"],  # trainer.epochs: 30 by default
        ["teacher.ckpt=[a.pt,b.pt]", "teacher.weights=[1]"],
    ],
)
def test_a_check_of_keys_left_to_their_defaults_waits_where_an_experiment_may_set_them(
    overrides,
):
    with pytest.raises(KdlabError):
        screen_overrides("distill", overrides)
    screen_overrides("distill", [*overrides, "experiment=quick"])
    screen_overrides("distill", [*overrides, "preset=ls_kd"])


def test_a_bound_applies_only_while_its_switch_is_known_to_be_on():
    """loss=mlkd's 4 temperatures bind with loss.official_strong_kd (true by default), which
    an experiment may set: as the pre-flight, the screen passes the switched-off bound."""
    mlkd = ["loss=mlkd", "data.views=weak_strong", "loss.temperatures=[2]"]
    with pytest.raises(KdlabError, match=r"loss\.temperatures must list 4 or more values"):
        screen_overrides("distill", mlkd)
    screen_overrides("distill", [*mlkd, "loss.official_strong_kd=false"])
    compose_config("distill", [*mlkd, "loss.official_strong_kd=false"])
    screen_overrides("distill", [*mlkd, "experiment=quick"])


# Added or deleted keys the screen cannot judge without the registries, or Hydra words; a
# check of settings an experiment may set.
LEFT_TO_THE_PRE_FLIGHT = [
    ("train", ["+data.download=false"]),  # cifar10's own key: a field
    ("train", ["+model.depth=3"]),  # the model's options are its builder's
    ("distill", ["+loss.nosuch=1"]),  # a method's settings
    ("distill", ["loss=dkd", "~loss.warmup"]),
    ("train", ["experiment=quick", "+data.channels=1"]),  # the experiment may pick the data
    ("train", ["~nosuch"]),  # Hydra words the deletion of a key that is not there
    # and of a key inside a typed node, of a group without a default, of a list of options
    ("train", ["~trainer.epochs"]),
    ("train", ["data=cifar10", "~data.download"]),
    ("train", ["~data"]),
    ("train", ["~model"]),
    ("train", ["~logger"]),
    # a resume reads the teachers its checkpoint pins; loss=ce reads none
    ("distill", ["teacher.ckpt=/nonexistent/teacher.pt", "resume=true"]),
    ("distill", ["teacher.ckpt=/nonexistent/teacher.pt", "loss=ce"]),
    ("distill", ["teacher.ckpt=/nonexistent/teacher.pt", "experiment=quick"]),  # may resume
    # one value per channel: the experiment may set data.channels=1
    (
        "train",
        [
            "data=imagefolder",
            "data.root=abc",
            "data.mean=[0.5]",
            "data.std=[0.5]",
            "experiment=quick",
        ],
    ),
]


def test_what_the_screen_is_not_sure_of_is_left_to_the_pre_flight():
    """Run in a fresh interpreter: this one has imported the registries, which make the screen
    leave every registry's group to the pre-flight."""
    script = (
        "import json, sys\n"
        "from kdlab.runs.screen import screen_overrides\n"
        "for command, overrides in json.loads(sys.argv[1]):\n"
        "    screen_overrides(command, overrides)\n"
    )
    cases = json.dumps(LEFT_TO_THE_PRE_FLIGHT)
    proc = subprocess.run(
        [sys.executable, "-c", script, cases], env=command_env(None), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_the_screen_prints_the_pre_flights_line(tmp_path, monkeypatch):
    """Each screened row's line is the one the full pre-flight gives (the composed config's
    checks, then the teachers')."""
    results, _ = screened_lines(tmp_path)
    monkeypatch.chdir(tmp_path)
    for argv, _, stderr in results:
        if not COMMANDS[argv[0]].hydra:
            continue  # export, predict and study have no composed config
        with pytest.raises(KdlabError) as refused:
            check_overrides(argv[0], argv[1:-1], multirun=False)  # without hydra.run.dir
        assert stderr == f"kdlab: error: {refused.value}\n", argv

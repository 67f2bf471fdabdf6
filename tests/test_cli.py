"""The CLI as a user meets it: help, Hydra flags, and one-line errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def assert_one_line_error(proc, *fragments: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("kdlab: error: ")
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_help_lists_the_commands(kdlab):
    proc = kdlab("--help")
    assert proc.returncode == 0
    assert "train" in proc.stdout and "models" in proc.stdout
    assert "kdlab train --help" in proc.stdout


def test_help_lists_every_study_where_they_are_defined():
    from kdlab.cli.main import usage

    study_line = next(line for line in usage().splitlines() if line.strip().startswith("study"))
    plans = [p.stem for p in (Path(__file__).parents[1] / "conf" / "study").glob("*.yaml")]
    assert "methods" in plans
    for name in [*plans, "cifar100"]:
        assert name in study_line.split(": ", 1)[1].split(", "), (name, study_line)


def test_the_methods_study_runs_every_method_of_the_registry():
    """`kdlab study methods` covers kdlab's methods: each registered one is a distill run's
    `loss=` (ce, the baseline method, is the study's baseline run)."""
    from kdlab.cli.commands.study import load_study
    from kdlab.methods.registry import METHODS

    _, runs = load_study("methods")
    losses = [a.split("=", 1)[1] for r in runs for a in r.args if a.startswith("loss=")]
    assert set(losses) == set(METHODS) - {"ce"}
    assert [r.name for r in runs if r.command == "train" and not r.teacher] == ["baseline"]


def test_train_help_is_hydras(kdlab):
    proc = kdlab("train", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "model: " in proc.stdout and "resnet_teacher" in proc.stdout


@pytest.mark.parametrize(
    ("command", "groups", "knobs"),
    [
        ("distill", ["model", "data", "loss", "experiment"], ["alpha=0.1", "HARD-label", "T=4"]),
        ("fitnet", ["model", "stage2"], ["fitnet.hint_layer", "stage2=finetune|frozen"]),
        ("train", ["model", "data", "sched"], ["cross-entropy"]),
    ],
)
def test_command_help_explains_its_knobs_and_lists_only_its_groups(kdlab, command, groups, knobs):
    proc = kdlab(command, "--help")
    assert proc.returncode == 0, proc.stderr
    listed = proc.stdout.split("== Config groups", 1)[1].split("== Config (", 1)[0]
    names = {line.split(":", 1)[0] for line in listed.splitlines()[1:] if ":" in line}
    assert set(groups) <= names and "study" not in names
    assert ("stage2" in names) == (command == "fitnet")
    for knob in knobs:
        assert knob in proc.stdout.split("== Config groups", 1)[0]


def test_cfg_job_prints_the_composed_config(kdlab):
    proc = kdlab("train", "--cfg", "job", "model=cnn_student", "trainer.epochs=7")
    assert proc.returncode == 0, proc.stderr
    assert "arch: cnn_student" in proc.stdout
    assert "epochs: 7" in proc.stdout


def test_models_lists_parameter_counts(kdlab):
    proc = kdlab("models")
    assert proc.returncode == 0, proc.stderr
    for name in ("resnet_teacher", "cnn_student", "fitnet_student", "wrn_40_2", "torchvision"):
        assert name in proc.stdout
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()}
    assert rows["model"][1:4] == ["params@10", "params@100", "published"]
    for name in ("wrn_16_1", "wrn_40_1", "vgg11", "vgg16", "vgg19", "resnet50", "shufflenetv1"):
        assert name in rows
    assert rows["mobilenetv2"][1:4] == ["0.698M", "0.813M", "0.81M"]
    assert rows["resnet50"][2:4] == ["23.705M", "23.71M"]


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["nosuch"], ["unknown command 'nosuch'", "train"]),
        (["train", "model=nosuch"], ["unknown model 'nosuch'", "resnet_teacher"]),
        (["train", "data=nosuch"], ["unknown data 'nosuch'", "synthetic"]),
        (["train", "optim=nosuch"], ["unknown optim 'nosuch'", "adamw"]),
        (["train", "sched=nosuch"], ["unknown sched 'nosuch'", "cosine"]),
        (["train", "trainer.epochs=abc"], ["trainer.epochs", "abc"]),
        (["train", "trainer.epochs=0"], ["trainer.epochs must be positive"]),
        (["train", "trainer.batch_size=-4"], ["trainer.batch_size must be positive"]),
        (["train", "optim.lr=0"], ["optim.lr must be positive"]),
        (["train", "trainer.nosuch=1"], ["nosuch"]),
        (["train", "trainer.precision=fp8"], ["unknown trainer.precision 'fp8'", "bf16"]),
        (["train", "seed=1,2"], ["sweep", "-m"]),
        (["train", "model.arch=nosuch"], ["unknown model 'nosuch'"]),
        (["train", "model=torchvision", "model.name=nosuch"], ["nosuch"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(kdlab, args, fragments):
    assert_one_line_error(kdlab(*args), *fragments)


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["train", "trainer.epoch=3"], "did you mean trainer.epochs=3?"),
        (["distill", "t=4"], "did you mean T=4?"),
        (["train", "--epochs", "3"], "kdlab takes key=value overrides, e.g. trainer.epochs=3"),
        (["train", "--batch_size=64"], "e.g. trainer.batch_size=64"),
    ],
)
def test_a_typo_gets_the_setting_it_was_meant_for(kdlab, args, hint):
    assert_one_line_error(kdlab(*args), hint)


def test_missing_cifar_says_where_to_put_the_archive(kdlab, tmp_path):
    root = tmp_path / "nodata"
    proc = kdlab(
        "train",
        "model=cnn_student",
        f"data.root={root}",
        "data.download=false",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert_one_line_error(proc, "cifar-10-python.tar.gz", str(root))


def test_missing_image_folder_is_one_line(kdlab, tmp_path):
    proc = kdlab(
        "train",
        "data=imagefolder",
        f"data.root={tmp_path / 'none'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert_one_line_error(proc, str(tmp_path / "none"))


def test_debug_true_shows_the_traceback(kdlab, tmp_path):
    proc = kdlab(
        "train",
        "data=imagefolder",
        f"data.root={tmp_path / 'none'}",
        "debug=true",
        f"hydra.run.dir={tmp_path / 'run'}",
        fresh_process=True,  # the interpreter's own traceback
    )
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr


def test_console_script_is_installed():
    """The `kdlab` entry point next to this interpreter is the same CLI as `python -m kdlab`."""
    script = Path(sys.executable).parent / "kdlab"
    proc = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("kdlab ")

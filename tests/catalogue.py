"""The bad-input catalogue: inputs kdlab must refuse in one line, shared by the test suite
(test_bad_input.py) and scripts/error_catalogue.py (the README's table).

Every `BadInput` is a CLI call on the harness's `Workspace` (image folders, a finished teacher
run, damaged and crafted checkpoints); kdlab must answer each with one `kdlab: error: ...`
line on stderr and exit code 2. The tests check that line's fragments, the script tabulates
it. The rows are grouped by what goes wrong, in the table's order.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness import BLOW_UP, FAST, FOLDER_RUN, Workspace, run_kdlab

RELIABILITY_TESTS = "test_bad_input.py"  # where the rows with fragments are tested


@dataclass(frozen=True)
class BadInput:
    """One row of the catalogue: the input as a user types it, and what kdlab must say."""

    shown: str  # the table's input column
    args: Callable[[Workspace], list[str]]
    fragments: tuple[str, ...] = ()  # what the one line must contain
    tested_in: str = RELIABILITY_TESTS  # rows tested in other files are run for the table only
    preflight: bool = False  # refused before Hydra starts: not even the run dir is created
    # refused before torch is imported: by kdlab.runs.screen (train, distill, fitnet), or by
    # the checks of what the argv alone shows (export, predict, study)
    screened: bool = False
    # ... only on a machine with surely no GPU (kdlab.runs.screen.without_accelerators)
    screened_without_gpu: bool = False


def static(*args: str) -> Callable[[Workspace], list[str]]:
    return lambda ws: list(args)


def preflight(command: str, overrides: str, fragment: str, screened: bool = False) -> BadInput:
    """A value the pre-flight refuses: `kdlab COMMAND OVERRIDES` (separated by spaces);
    `screened`: so does the torch-free screen before it, with the same line."""
    return BadInput(
        f"`kdlab {command} {overrides}`",
        static(command, *overrides.split()),
        (fragment,),
        preflight=True,
        screened=screened,
    )


def screen(command: str, overrides: str, fragment: str) -> BadInput:
    """A value the torch-free screen refuses (before torch is imported), with the line the
    pre-flight would print."""
    return preflight(command, overrides, fragment, screened=True)


def screen_without_gpu(command: str, overrides: str, fragment: str) -> BadInput:
    """A value the torch-free screen refuses where the machine surely has no GPU (else only
    torch can tell)."""
    return dataclasses.replace(
        preflight(command, overrides, fragment, screened=True), screened_without_gpu=True
    )


def with_teacher(command: str, data: str, teacher: str, *more: str) -> Callable:
    """`command` on the image folder and with the teacher named by Workspace fields."""

    def args(ws: Workspace) -> list[str]:
        data_root, teacher_ckpt = getattr(ws, data), getattr(ws, teacher)
        return [
            command,
            *FOLDER_RUN,
            f"data.root={data_root}",
            f"teacher.ckpt={teacher_ckpt}",
            *more,
        ]

    return args


# --- unknown names: commands, config group options, choices ---------------------------------
UNKNOWN_NAMES = [
    BadInput("`kdlab nosuch`", static("nosuch"), tested_in="test_cli.py"),
    BadInput(
        "`kdlab train model=nosuch`",
        static("train", "model=nosuch"),
        ("unknown model 'nosuch'", "resnet_teacher", "(model=NAME)"),
        tested_in="test_cli.py",
        screened=True,
    ),
    BadInput(
        "`kdlab train data=nosuch`",
        static("train", "data=nosuch"),
        ("unknown data 'nosuch'", "synthetic", "(data=NAME)"),
        tested_in="test_cli.py",
        screened=True,
    ),
    BadInput(
        "`kdlab distill loss=nosuch`",
        static("distill", "loss=nosuch"),
        ("unknown loss 'nosuch'", "choose one of ab, at, ", " kd, ", "(loss=NAME)"),
        screened=True,
    ),
    BadInput(
        "`kdlab train optim=nosuch`",
        static("train", "optim=nosuch"),
        ("unknown optim 'nosuch'", "adamw", "(optim=NAME)"),
        tested_in="test_cli.py",
        screened=True,
    ),
    BadInput(
        "`kdlab fitnet stage2=nosuch`",
        static("fitnet", "stage2=nosuch"),
        ("unknown stage2 'nosuch'", "finetune, frozen"),
        screened=True,
    ),
    BadInput(
        "`kdlab fitnet fitnet.regressor=nosuch`",
        static("fitnet", "fitnet.regressor=nosuch"),
        ("unknown fitnet.regressor 'nosuch'", "conv1x1, conv3x3, none"),
        screened=True,
    ),
    screen("train", "trainer.device=cuda:abc", "unknown trainer.device 'cuda:abc'"),
    screen("distill", "teacher.model=nosuch", "unknown teacher.model 'nosuch'"),
]

# --- config values out of their range (kdlab.runs.validation's table) -----------------------
OUT_OF_RANGE = [
    BadInput(
        "`kdlab distill T=0`",
        static("distill", "T=0"),
        ("T must be positive, got 0",),
        screened=True,
    ),
    BadInput(
        "`kdlab distill T=-1`",
        static("distill", "T=-1"),
        ("T must be positive, got -1",),
        screened=True,
    ),
    BadInput(
        "`kdlab distill alpha=-0.1`",
        static("distill", "alpha=-0.1"),
        ("alpha must be in [0, 1]", "got -0.1"),
        screened=True,
    ),
    BadInput(
        "`kdlab distill alpha=1.5`",
        static("distill", "alpha=1.5"),
        ("alpha must be in [0, 1]", "got 1.5"),
        screened=True,
    ),
    BadInput(
        "`kdlab train trainer.epochs=0`",
        static("train", "trainer.epochs=0"),
        ("trainer.epochs must be positive, got 0",),
        tested_in="test_cli.py",
        screened=True,
    ),
    BadInput(
        "`kdlab train trainer.epochs=-1`",
        static("train", "trainer.epochs=-1"),
        ("trainer.epochs must be positive, got -1", "trainer.epochs=N"),
        screened=True,
    ),
    BadInput(
        "`kdlab train trainer.batch_size=0`",
        static("train", "trainer.batch_size=0"),
        ("trainer.batch_size must be positive, got 0",),
        screened=True,
    ),
    BadInput(
        "`kdlab train optim.lr=0`",
        static("train", "optim.lr=0"),
        ("optim.lr must be positive, got 0",),
        tested_in="test_cli.py",
        screened=True,
    ),
    BadInput(
        "`kdlab train optim.lr=-0.1`",
        static("train", "optim.lr=-0.1"),
        ("optim.lr must be positive",),
        screened=True,
    ),
    screen_without_gpu(
        "train", "trainer.device=cuda:99", "trainer.device=cuda:99 but this machine has"
    ),
    screen("train", "trainer.num_threads=-1", "trainer.num_threads must be positive, got -1"),
    screen("train", "trainer.eval_batch_size=0", "trainer.eval_batch_size must be positive, got 0"),
    screen("train", "trainer.grad_clip=inf", "trainer.grad_clip must be a finite number, got inf"),
    screen("train", "seed=-1", "seed must be in [0, 4294967296), got -1"),
    screen("train", "optim.betas=[2,3]", "optim.betas[0] must be in [0, 1), got 2.0"),
    screen("train", "optim.momentum=-1", "optim.momentum must be in [0, 1), got -1.0"),
    screen("train", "optim.lr=inf", "optim.lr must be a finite number, got inf"),
    screen(
        "train", "optim.weight_decay=nan", "optim.weight_decay must be a finite number, got nan"
    ),
    screen("train", "sched.min_lr_ratio=-1", "sched.min_lr_ratio must be in [0, 1], got -1.0"),
    screen("train", "sched.gamma=-1", "sched.gamma must be positive, got -1.0"),
    screen("train", "sched.milestones=[0.75,0.5]", "sched.milestones must ascend, got [0.75, 0.5]"),
    screen("train", "sched.milestones=[0.5,1.5]", "sched.milestones[1] (a fraction of training)"),
    screen("train", "sched.pct_start=1", "sched.pct_start must be in (0, 1), got 1.0"),
    screen("distill", "T=inf", "T must be a finite number, got inf"),
    screen("distill", "optim=dot optim.delta=0.2", "optim.delta=0.2 must keep both momenta"),
    screen("train", "optim=dot", "optim=dot splits a distillation loss from the task loss"),
    screen("distill", "optim=dot trainer.grad_clip=1", "trainer.grad_clip is not supported"),
    # On a CPU, fp16's own refusal comes first (DOT's is reached only on a GPU).
    screen_without_gpu(
        "distill", "optim=dot trainer.precision=fp16", "trainer.precision=fp16 on a CPU"
    ),
    screen("distill", "optim=dot trainer.compile=true", "set trainer.compile=false"),
    screen(
        "train",
        "trainer.epochs=2 sched.warmup_epochs=2",
        "sched.warmup_epochs (2.0) must be shorter than trainer.epochs (2)",
    ),
    screen(
        "fitnet", "fitnet.finetune_lr_scale=-1", "fitnet.finetune_lr_scale must be >= 0, got -1.0"
    ),
    screen("study", "born_again generations=0", "generations must be a positive integer, got '0'"),
    screen("study", "note1 generations=2", "generations= belongs to the born_again study"),
]

# --- methods and the models they tap ---------------------------------------------------------
METHODS = [
    screen("distill", "loss=at loss.beta=-1", "loss.beta must be >= 0 for loss=at, got -1.0"),
    screen("distill", "loss=dkd loss.warmup=-1", "loss.warmup must be >= 0 for loss=dkd, got -1"),
    screen("fitnet", "loss=at", "stage two takes a logit method, not loss=at"),
    screen("fitnet", "loss=mlkd", "stage two takes a logit method, not loss=mlkd"),
    screen("distill", "loss=mlkd", "loss=mlkd trains on a weak and a strong view"),
    screen("distill", "loss=kd data.views=weak_strong", "loss=kd reads one view per image"),
    screen("train", "data.views=weak_strong", "this command reads one view per image"),
    screen("distill", "data.views=both", "data.views must be one of weak, weak_strong"),
    screen(
        "distill",
        "loss=mlkd data.views=weak_strong loss.temperatures=[2]",
        "loss.temperatures must list 4 or more values for loss=mlkd with loss.official_strong_kd",
    ),
    BadInput(
        "`kdlab distill loss=at model=torchvision model.name=vit_b_16`",
        static("distill", "loss=at", "model=torchvision", "model.name=vit_b_16"),
        ("loss=at taps 3 feature point(s) of the student", "has 2 (conv_proj, encoder)"),
    ),
    BadInput(
        "`kdlab fitnet fitnet.hint_layer=nosuch`",
        with_teacher("fitnet", "abc", "teacher", "fitnet.hint_layer=nosuch"),
        tested_in="test_distill_e2e.py",
        preflight=True,
    ),
    BadInput(
        "`kdlab fitnet fitnet.regressor=none`, guided and hint shapes differ",
        with_teacher("fitnet", "abc", "teacher", "model=fitnet_student", "fitnet.regressor=none"),
        tested_in="test_distill_e2e.py",
    ),
]

# --- pretrained weights and timm names (the workspace's teacher is a resnet8 checkpoint) ----
PRETRAINED = [
    preflight(
        "train",
        "model=torchvision model.name=shufflenet_v2_x0_5 model.weights=IMAGENET1K_V9",
        "unknown weights 'IMAGENET1K_V9' for torchvision shufflenet_v2_x0_5: choose one of "
        "DEFAULT, IMAGENET1K_V1",
    ),
    preflight(
        "train",
        "model=torchvision model.weights=teacher/checkpoints/best.pt",
        "do not fit torchvision resnet18: 120 missing (first: conv1.weight)",
    ),
    preflight(
        "train",
        "model=timm model.name=resnet_18",
        "unknown timm model 'resnet_18' (close: resnet18",
    ),
    preflight("train", "model=torchvision model.freeze_epochs=1", "freezes a pretrained backbone"),
]

# --- data: missing, empty, unreadable or too few classes ------------------------------------
DATA = [
    BadInput(
        "`kdlab distill loss=mlkd data.views=weak_strong` on streamed image files",
        with_teacher(
            "distill",
            "abc",
            "teacher",
            "loss=mlkd",
            "data.views=weak_strong",
            "data.in_memory_max_mb=0",
        ),
        (
            "data.views=weak_strong makes its strong views from images in memory",
            "data.in_memory_max_mb",
        ),
    ),
    BadInput(
        "`data=imagefolder data.root=MISSING_DIR`",
        lambda ws: ["train", "data=imagefolder", f"data.root={ws.root / 'missing'}"],
        tested_in="test_cli.py",
    ),
    BadInput(
        "`data=imagefolder data.root=EMPTY_DIR`",
        lambda ws: ["train", *FOLDER_RUN, f"data.root={ws.empty}"],
        (f"{os.sep}empty{os.sep}train not found", "must hold train/<class>/ and test/<class>/"),
    ),
    BadInput(
        "`data=cifar10 data.download=false data.root=MISSING_DIR`",
        lambda ws: ["train", "data.download=false", f"data.root={ws.root / 'missing'}"],
        tested_in="test_cli.py",
    ),
    BadInput(
        "`data=cifar10 data.download=false data.root=EMPTY_DIR`",
        lambda ws: ["train", "data=cifar10", "data.download=false", f"data.root={ws.empty}"],
        ("CIFAR-10 not found in", "put cifar-10-python.tar.gz there", "data.download=true"),
    ),
    BadInput(
        "`data=imagefolder`, a file in it that is not an image",
        lambda ws: ["train", *FOLDER_RUN, f"data.root={ws.broken}"],
        ("cannot read image", f"broken{os.sep}train{os.sep}b{os.sep}5.png", "fix or delete"),
    ),
    BadInput(
        "`data=imagefolder`, a folder of one class",
        lambda ws: ["train", *FOLDER_RUN, f"data.root={ws.one_class}"],
        ("data=imagefolder has 1 class (a): a classifier needs 2 or more",),
        preflight=True,
    ),
]

# --- teachers: missing, damaged, unsafe, or trained on other data ---------------------------
TEACHERS = [
    BadInput(
        "`teacher.ckpt=MISSING.pt`",
        lambda ws: ["distill", f"teacher.ckpt={ws.root / 'missing.pt'}"],
        ("checkpoint not found", "missing.pt"),
        tested_in="test_distill_e2e.py",
        preflight=True,
        screened=True,
    ),
    BadInput(
        "`teacher.ckpt=` a truncated checkpoint",
        with_teacher("distill", "abc", "truncated"),
        tested_in="test_distill_e2e.py",
        preflight=True,
    ),
    BadInput(
        "`teacher.ckpt=` a file that would run code when unpickled",
        lambda ws: ["distill", *FAST, f"teacher.ckpt={ws.crafted}"],
        tested_in="test_reliability.py::test_a_checkpoint_that_would_run_code_is_refused",
        preflight=True,
    ),
    BadInput(
        "`teacher.ckpt=` a JSON file",
        lambda ws: ["distill", *FAST, f"teacher.ckpt={ws.bad_summary / 'summary.json'}"],
        ("summary.json is not a checkpoint", "give a kdlab .pt file or a run dir"),
        preflight=True,
    ),
    BadInput(
        "`teacher.ckpt=` a teacher of another data set",
        lambda ws: ["distill", *FAST, f"teacher.ckpt={ws.teacher}"],
        ("was trained on data=imagefolder, this run uses data=synthetic", "teacher.ckpt=PATH"),
        preflight=True,
    ),
    BadInput(
        "`teacher.ckpt=` a 3-class teacher, 2-class data",
        with_teacher("distill", "ab", "teacher"),
        ("predicts 3 classes, the data has 2", "teacher.ckpt=PATH"),
        preflight=True,
    ),
    BadInput(
        "`teacher.ckpt=` a teacher of classes a, b, c; data of a, b, d",
        with_teacher("distill", "abd", "teacher"),
        ("has class 2 = 'c', the data has 'd'", "teacher.ckpt=PATH"),
        preflight=True,
    ),
    BadInput(
        "`data.normalize=imagenet`, a teacher trained on the data set's statistics",
        with_teacher("distill", "abc", "teacher", "data.normalize=imagenet"),
        ("normalised with dataset statistics, this run uses imagenet", "data.normalize=dataset"),
        preflight=True,
    ),
    BadInput(
        "`data.image_size=24`, a teacher trained at 16 px",
        with_teacher("distill", "abc", "teacher", "data.image_size=24"),
        ("was trained on 16x16 images, this run serves 24x24", "data.image_size=16"),
        preflight=True,
    ),
    # several teachers (teacher.ckpt=[A,B]): logit methods only, agreeing, weighted sensibly
    screen(
        "distill",
        "loss=at teacher.ckpt=[a.pt,b.pt,c.pt]",
        "loss=at takes one teacher (it reads the teacher's features); teacher.ckpt has 3",
    ),
    screen(
        "fitnet",
        "teacher.ckpt=[a.pt,b.pt]",
        "kdlab fitnet takes one teacher (its hint stage reads the teacher's features)",
    ),
    screen(
        "distill",
        "teacher.ckpt=[a.pt,b.pt] teacher.weights=[1]",
        "teacher.weights has 1 weight(s) for 2 teacher(s)",
    ),
    screen(
        "distill",
        "teacher.ckpt=[a.pt,b.pt] teacher.weights=[1,-1]",
        "teacher.weights[1] must be >= 0",
    ),
    screen("distill", "teacher.ckpt=[a.pt,b.pt] teacher.weights=[0,0]", "teacher.weights sum to 0"),
    BadInput(
        "`teacher.ckpt=[A,B]` teachers of 3 and of 2 classes",
        lambda ws: [
            "distill",
            *FOLDER_RUN,
            f"data.root={ws.abc}",
            f"teacher.ckpt=[{ws.teacher},{ws.two_class_teacher}]",
        ],
        ("has 2 classes, teacher", "has 3: the teachers of teacher.ckpt=[...] must agree"),
        preflight=True,
    ),
]

# --- run dirs: finished runs, resumes, unwritable places ------------------------------------
RUN_DIRS = [
    BadInput(
        "`hydra.run.dir=` a finished run, no `resume=true`",
        lambda ws: ["train", *FOLDER_RUN, f"data.root={ws.abc}", f"hydra.run.dir={ws.teacher}"],
        ("already holds a run", "add resume=true", "pick another hydra.run.dir"),
    ),
    BadInput(
        "`resume=true hydra.run.dir=` a dir without checkpoints/last.pt",
        static("train", *FAST, "resume=true"),
        ("resume=true but", "last.pt does not exist", "drop resume=true"),
    ),
    BadInput(
        "`resume=true` with another `model=` than the run's",
        lambda ws: [
            "train",
            *FOLDER_RUN,
            f"data.root={ws.abc}",
            "model=cnn_student",
            "resume=true",
            f"hydra.run.dir={ws.teacher}",
        ],
        ("resume=true but model.arch changed (cnn_student vs resnet8 in the run)", "new run"),
    ),
    BadInput(
        "`hydra.run.dir=` a path under a regular file",
        lambda ws: ["train", *FAST, f"hydra.run.dir={ws.regular_file / 'run'}"],
        ("cannot write to", "a_file is a file", "pick another hydra.run.dir"),
    ),
]

# --- training that goes wrong -----------------------------------------------------------------
TRAINING = [
    BadInput(
        "a NaN loss (`sched=multistep sched.gamma=1e30`: the lr explodes in epoch 2)",
        static("train", *FAST, *BLOW_UP, "sched.milestones=[0.5]"),
        tested_in=f"{RELIABILITY_TESTS}::test_a_nonfinite_loss_stops_the_run_keeping_the_last_good_checkpoint",
    ),
]

# --- a finished run's export, prediction and report -----------------------------------------
FINISHED_RUNS = [
    BadInput(
        "`kdlab export RUN --format tflite`",
        lambda ws: ["export", str(ws.teacher), "--format", "tflite"],
        ("invalid choice: 'tflite'", "'onnx', 'torchscript', 'safetensors'"),
        preflight=True,
        screened=True,
    ),
    BadInput(
        "`kdlab export` a run dir without a finished checkpoint",
        lambda ws: ["export", str(ws.empty)],
        ("has no finished checkpoint (no checkpoints/best.pt", "or a .pt file"),
        preflight=True,
        screened=True,
    ),
    BadInput(
        "`kdlab export MISSING_DIR`",
        lambda ws: ["export", str(ws.root / "missing"), "--format", "torchscript"],
        (f"no run dir or checkpoint at {os.sep}", "give a run dir"),
        preflight=True,
        screened=True,
    ),
    BadInput(
        "`kdlab predict RUN` an image that cannot be read",
        lambda ws: ["predict", str(ws.teacher), str(ws.broken / "train" / "b" / "5.png")],
        ("cannot read image", f"broken{os.sep}train{os.sep}b{os.sep}5.png", "fix or delete"),
        preflight=True,
    ),
    BadInput(
        "`kdlab report` on a run whose summary.json has a non-numeric accuracy",
        lambda ws: ["report", str(ws.bad_summary), f"--out={ws.root / 'report'}"],
        ('has test_acc="high", not a number', "fix or delete that run dir"),
        preflight=True,
    ),
]

CATALOGUE = [
    *UNKNOWN_NAMES,
    *OUT_OF_RANGE,
    *METHODS,
    *PRETRAINED,
    *DATA,
    *TEACHERS,
    *RUN_DIRS,
    *TRAINING,
    *FINISHED_RUNS,
]


def run_bad_input(case: BadInput, ws: Workspace, run_dir: Path) -> subprocess.CompletedProcess:
    """Run the case (into `run_dir` unless it names its own run dir or is not a Hydra app)."""
    args = case.args(ws)
    hydra_app = args[0] in ("train", "distill", "fitnet")
    if hydra_app and not any(a.startswith("hydra.run.dir=") for a in args):
        args.append(f"hydra.run.dir={run_dir}")
    return run_kdlab(*args, cwd=ws.root)


# --- outputs: never over a run's records, nor over an existing file without --force ---------


def not_utf8_summary(ws: Workspace) -> Path:
    """A run dir whose summary.json is not UTF-8 (what a CSV written over it can leave)."""
    run = ws.root / "not_utf8"
    run.mkdir(exist_ok=True)
    (run / "summary.json").write_bytes(b'{"command": "train", "model": "\xff\xfe"}\n')
    return run


def in_teacher(*parts: str) -> Callable[[Workspace], Path]:
    return lambda ws: ws.teacher.joinpath(*parts)


def export_to(fmt: str, out: Callable[[Workspace], Path]) -> Callable[[Workspace], list[str]]:
    return lambda ws: ["export", str(ws.teacher), "--format", fmt, "--out", str(out(ws))]


def predict_to(csv: Callable[[Workspace], Path]) -> Callable[[Workspace], list[str]]:
    images = "test/a"  # two of the image folder's test images
    return lambda ws: ["predict", str(ws.teacher), str(ws.abc / images), "--csv", str(csv(ws))]


RECORDS = "is one of the records of the run in"
CATALOGUE += [
    BadInput(
        "`kdlab export RUN --format torchscript --out RUN/checkpoints/best.pt`",
        export_to("torchscript", in_teacher("checkpoints", "best.pt")),
        (RECORDS, "pick another --out"),
        preflight=True,
        screened=True,
    ),
    BadInput(
        "`kdlab export RUN --format safetensors --out RUN/checkpoints/last.pt`",
        export_to("safetensors", in_teacher("checkpoints", "last.pt")),
        (RECORDS, "pick another --out"),
        preflight=True,
        screened=True,
    ),
    BadInput(
        "`kdlab export RUN --out RUN/summary.json`",
        export_to("torchscript", in_teacher("summary.json")),
        (RECORDS, "pick another --out"),
        preflight=True,
        screened=True,
    ),
    BadInput(
        "`kdlab export RUN --out RUN/.hydra/config.yaml`",
        export_to("torchscript", in_teacher(".hydra", "config.yaml")),
        (RECORDS, "pick another --out"),
        preflight=True,
        screened=True,
    ),
    BadInput(
        "`kdlab export RUN --out EXISTING_FILE` (no --force)",
        export_to("torchscript", lambda ws: ws.regular_file),
        ("a_file exists: add --force to replace it", "pick another --out"),
        preflight=True,
        screened=True,
    ),
    BadInput(
        "`kdlab predict RUN IMAGES --csv RUN/summary.json`",
        predict_to(in_teacher("summary.json")),
        (RECORDS, "pick another --csv"),
        preflight=True,
        screened=True,
    ),
    BadInput(
        "`kdlab predict RUN IMAGES --csv EXISTING_FILE` (no --force)",
        predict_to(lambda ws: ws.regular_file),
        ("a_file exists: add --force to replace it",),
        preflight=True,
        screened=True,
    ),
    BadInput(
        "`kdlab report RUN --out RUN/checkpoints`",
        lambda ws: ["report", str(ws.teacher), "--out", str(ws.teacher / "checkpoints")],
        ("holds the records of the run in", "pick another --out"),
        preflight=True,
    ),
    BadInput(
        "`kdlab study note1 --out EXISTING_FILE`",
        lambda ws: ["study", "note1", "--out", str(ws.regular_file)],
        ("a_file is a file: give a dir",),
        preflight=True,
        screened=True,
    ),
    BadInput(
        "`kdlab report` on a run whose summary.json is not UTF-8",
        lambda ws: ["report", str(not_utf8_summary(ws)), f"--out={ws.root / 'report'}"],
        ("cannot read", "summary.json", "fix or delete that run dir"),
        preflight=True,
    ),
]


# --- checkpoints that differ from their records (best.pt.json) -------------------------------


def modified_teacher(ws: Workspace) -> Path:
    """A copy of the teacher run whose best.pt was changed (one weight) after its record."""
    run = ws.root / "modified_teacher"
    if not run.exists():
        shutil.copytree(ws.teacher, run)
        best = run / "checkpoints" / "best.pt"
        state = torch.load(best, weights_only=True)
        first = next(iter(state["model"]))
        state["model"][first] = state["model"][first] + 1e-3
        torch.save(state, best)
    return run


DIFFERS = "is not the file its record best.pt.json describes"
CATALOGUE += [
    BadInput(
        "`kdlab export RUN` whose best.pt differs from best.pt.json",
        lambda ws: ["export", str(modified_teacher(ws)), "--format", "torchscript"],
        (DIFFERS, "restore it, or pass --allow-modified"),
        preflight=True,
    ),
    BadInput(
        "`kdlab predict RUN IMAGES` whose best.pt differs from best.pt.json",
        lambda ws: ["predict", str(modified_teacher(ws)), str(ws.abc / "test" / "a")],
        (DIFFERS, "restore it, or pass --allow-modified"),
        preflight=True,
    ),
    BadInput(
        "`kdlab distill teacher.ckpt=RUN` whose best.pt differs from best.pt.json",
        lambda ws: [
            "distill",
            *FOLDER_RUN,
            f"data.root={ws.abc}",
            f"teacher.ckpt={modified_teacher(ws)}",
        ],
        (DIFFERS, "restore it, or pass teacher.allow_modified=true"),
    ),
]


# --- issue 25, item 3: names, sizes and records that are not what kdlab wrote ----------------


def not_utf8_class(ws: Workspace) -> Path:
    """The abc image folder with class c renamed to bytes that are not UTF-8."""
    root = ws.root / "not_utf8_class"
    if not root.exists():
        shutil.copytree(ws.abc, root)
        for split in ("train", "test"):
            os.rename(
                root / split / "c", Path(os.fsdecode(os.fsencode(root / split / "c") + b"\xff"))
            )
    return root


def no_test_images(ws: Workspace) -> Path:
    """A Fashion-MNIST copy whose test idx files hold 0 images."""
    from kdlab.data.idx import IMAGES_MAGIC, LABELS_MAGIC, idx_bytes, write_tiny

    root = ws.root / "fashion_no_test"
    if not root.exists():
        write_tiny("fashion_mnist", root)
        empty = {IMAGES_MAGIC: np.zeros((0, 28, 28), np.uint8), LABELS_MAGIC: np.zeros(0, np.uint8)}
        for name, magic in (
            ("t10k-images-idx3-ubyte", IMAGES_MAGIC),
            ("t10k-labels-idx1-ubyte", LABELS_MAGIC),
        ):
            (root / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(empty[magic], magic)))
    return root


def symlink_loop(ws: Workspace) -> Path:
    """loop_a -> loop_b -> loop_a: a hydra.run.dir below it can never be made."""
    a, b = ws.root / "loop_a", ws.root / "loop_b"
    if not a.is_symlink():
        a.symlink_to(b)
        b.symlink_to(a)
    return a / "run"


def with_metrics(ws: Workspace, name: str, first: str = "", last: str = "") -> Path:
    """A copy of the teacher run with `first` put before its metrics.jsonl and `last` after."""
    run = ws.root / name
    if not run.exists():
        shutil.copytree(ws.teacher, run)
        metrics = run / "metrics.jsonl"
        metrics.write_text(first + metrics.read_text() + last)
    return run


def crafted_teacher(ws: Workspace, name: str, change: Callable[[dict], None]) -> Path:
    """The teacher's best.pt with `change` applied to its dict, as a lone .pt (no record)."""
    path = ws.root / "crafted" / f"{name}.pt"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        state = torch.load(ws.teacher / "checkpoints" / "best.pt", weights_only=True)
        state["config"] = {**state["config"], "model": dict(state["config"]["model"])}
        change(state)
        torch.save(state, path)
    return path


def other_arch(state: dict) -> None:
    state["config"]["model"]["arch"] = "cnn_student"


def other_shapes(state: dict) -> None:
    first = next(iter(state["model"]))
    state["model"][first] = torch.zeros(2, 2)


def set_key(key: str, value: object) -> Callable[[dict], None]:
    return lambda state: state.update({key: value})


def without_model_config(state: dict) -> None:
    del state["config"]["model"]


CRAFTED = {
    "other_arch": other_arch,
    "other_shapes": other_shapes,
    "model_str": set_key("model", "weights"),
    "config_str": set_key("config", "config"),
    "no_model_config": without_model_config,
    "image_size_-5": set_key("image_size", -5),
}
NOT_KDLAB = "is not a kdlab checkpoint"
CRAFTED_SAYS = {
    "other_arch": ("do not fit its model cnn_student", "54 unexpected (first: stem.0.weight)"),
    "other_shapes": ("do not fit its model resnet8", "differ (first: stem.0.weight is 2x2"),
    "model_str": (NOT_KDLAB, "its model is a str, not a dict of weights"),
    "config_str": (NOT_KDLAB, "its config is a str, not a dict"),
    "no_model_config": ("has no model config (config.model.arch)",),
    "image_size_-5": (NOT_KDLAB, "its image_size is -5, not an int >= 0"),
}
LIST_LINE = "[1, 2]\n"  # valid JSON, not an epoch's record
NOT_AN_EPOCH = "is not an epoch record (a JSON object with an epoch): fix or delete that line"
CATALOGUE += [
    BadInput(
        "`data=imagefolder data.root=` a file",
        lambda ws: ["train", *FOLDER_RUN, f"data.root={ws.regular_file}"],
        ("a_file is a file, not a folder", "data.root=DIR must hold train/<class>/"),
        preflight=True,
        screened=True,
    ),
    BadInput(
        "`data=imagefolder`, a class folder whose name is not UTF-8",
        lambda ws: ["train", *FOLDER_RUN, f"data.root={not_utf8_class(ws)}"],
        ("has a class named 'c\\xff', which is not valid UTF-8", "rename that class folder"),
        preflight=True,
    ),
    BadInput(
        "`data=fashion_mnist` whose test files hold 0 images",
        lambda ws: [
            "train",
            "data=fashion_mnist",
            f"data.root={no_test_images(ws)}",
            "data.download=false",
            "data.val_split=0",
            "trainer.batch_size=10",
            "model=cnn_student",
        ],
        ("data=fashion_mnist has no test images", "put its test split in data.root"),
    ),
    BadInput(
        "`trainer.batch_size=1000` with 18 training images",
        lambda ws: ["train", *FOLDER_RUN, f"data.root={ws.abc}", "trainer.batch_size=1000"],
        (
            "trainer.batch_size=1000 is larger than the training split (18 images)",
            "set trainer.batch_size=18 or lower",
        ),
    ),
    screen("train", "data.image_size=40000", "cifar10 images are 32x32: drop data.image_size"),
    screen(
        "train",
        "data=imagefolder data.root=abc data.image_size=40000",
        "data.image_size=40000 makes one batch of 512 images 9,830,400,000,000 bytes",
    ),
    BadInput(
        "`hydra.run.dir=` through a symlink loop",
        lambda ws: ["train", *FAST, f"hydra.run.dir={symlink_loop(ws)}"],
        ("(Too many levels of symbolic links): pick another hydra.run.dir",),
        preflight=True,
    ),
    BadInput(
        "`kdlab export RUN --out A_FILE/model.pt` (a path under a regular file)",
        export_to("torchscript", lambda ws: ws.regular_file / "model.pt"),
        ("a_file, a file: pick another --out",),
        preflight=True,
        screened=True,
    ),
    BadInput(
        "`kdlab report --curves` on a metrics.jsonl with a torn line before the last",
        lambda ws: [
            "report",
            str(with_metrics(ws, "torn_metrics", first='{"epoch": 0, "tr\n')),
            "--curves",
            f"--out={ws.root / 'report_torn'}",
        ],
        ("metrics.jsonl line 1 " + NOT_AN_EPOCH,),
        preflight=True,
    ),
    BadInput(
        "`resume=true` on a run whose metrics.jsonl has a line that is not an object",
        lambda ws: [
            "train",
            *FOLDER_RUN,
            f"data.root={ws.abc}",
            "trainer.epochs=2",
            "resume=true",
            f"hydra.run.dir={with_metrics(ws, 'list_in_metrics', last=LIST_LINE)}",
        ],
        ("metrics.jsonl line 2 " + NOT_AN_EPOCH,),
    ),
    *[
        BadInput(
            f"`kdlab {command}` a checkpoint: {name.replace('_', ' ')}",
            args,
            CRAFTED_SAYS[name],
            # A teacher's weights of another architecture show only once they are loaded.
            preflight=name != "other_arch",
        )
        for command, name, args in (
            ("distill", "other_arch", lambda ws: with_crafted_teacher(ws, "other_arch")),
            (
                "export",
                "other_shapes",
                lambda ws: ["export", str(crafted_teacher(ws, "other_shapes", other_shapes))],
            ),
            ("predict", "model_str", lambda ws: predict_with(ws, "model_str")),
            ("distill", "config_str", lambda ws: with_crafted_teacher(ws, "config_str")),
            (
                "export",
                "no_model_config",
                lambda ws: [
                    "export",
                    str(crafted_teacher(ws, "no_model_config", without_model_config)),
                ],
            ),
            ("predict", "image_size_-5", lambda ws: predict_with(ws, "image_size_-5")),
        )
    ],
]


def with_crafted_teacher(ws: Workspace, name: str) -> list[str]:
    teacher = crafted_teacher(ws, name, CRAFTED[name])
    return ["distill", *FOLDER_RUN, f"data.root={ws.abc}", f"teacher.ckpt={teacher}"]


def predict_with(ws: Workspace, name: str) -> list[str]:
    return ["predict", str(crafted_teacher(ws, name, CRAFTED[name])), str(ws.abc / "test" / "a")]


# --- config keys that would be saved and never read, settings that train nothing ------------


def nan_teacher(ws: Workspace) -> Path:
    """The teacher's best.pt, alone (no record), with one NaN in its last BatchNorm's
    running variance: every target it gives would be NaN."""
    path = ws.root / "nan_teacher.pt"
    if not path.exists():
        state = torch.load(ws.teacher / "checkpoints" / "best.pt", weights_only=True)
        name = [k for k in state["model"] if k.endswith("running_var")][-1]
        state["model"][name][0] = float("nan")
        torch.save(state, path)
    return path


CATALOGUE += [
    screen("train", "+foo=1", "unknown setting '+foo': kdlab's config has no such key"),
    screen("train", "+trainer.epochz=5", "did you mean trainer.epochs=5?"),
    screen("train", "+data.trian_size=10", "did you mean data.train_size=10?"),
    screen("train", "~trainer", "~trainer deletes kdlab's trainer settings"),
    screen("train", "~optim", "~optim deletes kdlab's optim settings"),
    preflight("train", "+trainer.epochs=3", "trainer.epochs already has a value"),
    # Found by the fuzzer (slow set): a key added twice passed the pre-flight, which merged
    # the two, and Hydra's own composition then raised a traceback.
    preflight("train", "+trainer.grad_clip=1 +trainer.grad_clip=1", "set it once"),
    # Found by the fuzzer: the hint was "did you mean model={a:1}?", the input itself.
    screen("train", "model={a:1}", "model= takes an option's name, not {a:1}: set one of its"),
    screen("distill", "loss=dkd loss.beta=nan", "loss.beta must be a finite number"),
    screen("distill", "loss=at loss.weight=nan", "loss.weight must be a finite number"),
    screen("distill", "loss=rkd loss.distance_weight=inf", "loss.distance_weight must be a fin"),
    screen("distill", "loss=at loss.p=0", "loss.p must be >= 1 for loss=at"),
    screen("distill", "T=1e-30", "T=1e-30 is too small"),
    screen("train", "trainer.precision=fp16 trainer.device=cpu", "use trainer.precision=bf16 or"),
    BadInput(
        "`kdlab distill teacher.cache_dir=FILE`",
        lambda ws: ["distill", f"teacher.cache_dir={ws.regular_file}"],
        ("is a file, not a directory",),
        preflight=True,
        screened=True,
    ),
    BadInput(
        "`kdlab distill teacher.ckpt=T.pt` whose weights hold a NaN",
        lambda ws: [
            "distill",
            *FOLDER_RUN,
            f"data.root={ws.abc}",
            f"teacher.ckpt={nan_teacher(ws)}",
        ],
        ("has non-finite values (NaN or Inf) in ", "running_var", "pick another teacher"),
    ),
]

"""The bad-input catalogue: inputs kdlab must refuse in one line, shared by the test suite and
scripts/error_catalogue.py.

Every `BadInput` is a CLI call on a `Workspace` (image folders, a finished teacher run, damaged
and crafted checkpoints) built by really running kdlab once; kdlab must answer each with one
`kdlab: error: ...` line on stderr and exit code 2. The tests check that line's fragments, the
script tabulates it for the README. Also here: the tiny settings and the CLI runner the suite's
end-to-end tests use.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from catalogue_deploy import DEPLOY
from catalogue_ranges import RANGES

# Small enough for seconds on 2 CPU cores, big enough for every split to have full batches.
TINY = [
    "data=synthetic",
    "data.train_size=320",
    "data.test_size=100",
    "data.val_split=0.01",  # of the full 10,000 synthetic train images: 100 val images
    "trainer.batch_size=32",
    "trainer.eval_batch_size=100",
    "trainer.epochs=2",
    "trainer.log_every=2",
]


def run_kdlab(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m kdlab ARGS` in `cwd`, as a user would run it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    env.pop("KDLAB_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "kdlab", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def succeeded(proc: subprocess.CompletedProcess) -> None:
    """A set-up run must succeed: anything else is a bug, shown with kdlab's stderr."""
    if proc.returncode != 0:
        command = " ".join(proc.args[3:])
        raise RuntimeError(f"kdlab {command} exited {proc.returncode}: {proc.stderr}")


FAST = ["model=cnn_student", *TINY, "trainer.deterministic=true"]
# From the milestone on, the lr is multiplied by 1e30: the weights blow up at that step.
BLOW_UP = ["sched=multistep", "sched.gamma=1e30"]


class RunsCode:
    """Unpickling this runs a shell command: what a crafted checkpoint would do to its user."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return (os.system, (self.command,))


def train_one_epoch(cwd: Path) -> Path:
    """A finished 1-epoch run of FAST in cwd/run."""
    proc = run_kdlab("train", *FAST, "trainer.epochs=1", "hydra.run.dir=run", cwd=cwd)
    succeeded(proc)
    return cwd / "run"


def resume_one_more_epoch(
    run: Path, file_size_limit: int | None = None
) -> subprocess.CompletedProcess:
    """Continue a 1-epoch run for a second epoch, optionally under RLIMIT_FSIZE."""

    def limit_file_size() -> None:
        # Python ignores SIGXFSZ, so a write past the limit fails with EFBIG (an OSError).
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run(
        [sys.executable, "-m", "kdlab", "train", *FAST, "resume=true", f"hydra.run.dir={run}"],
        cwd=run.parent,
        capture_output=True,
        text=True,
        preexec_fn=limit_file_size if file_size_limit else None,
    )


def write_image_folder(root: Path, classes: tuple[str, ...]) -> Path:
    """train/ (6 images a class) and test/ (2 a class) of 16x16 PNGs."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("test", 2)):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


FOLDER_RUN = [
    "data=imagefolder",
    "data.image_size=16",
    "data.val_split=0",
    "trainer.batch_size=4",
    "trainer.epochs=1",
    "model=resnet8",
]


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
    return ws


RELIABILITY_TESTS = "test_bad_input.py"  # where the rows with fragments are tested


@dataclass(frozen=True)
class BadInput:
    """One row of the catalogue: the input as a user types it, and what kdlab must say."""

    shown: str  # the table's input column
    args: Callable[[Workspace], list[str]]
    fragments: tuple[str, ...] = ()  # what the one line must contain
    tested_in: str = RELIABILITY_TESTS  # rows tested in other files are run for the table only
    preflight: bool = False  # refused before Hydra starts: not even the run dir is created


def static(*args: str) -> Callable[[Workspace], list[str]]:
    return lambda ws: list(args)


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


CATALOGUE = [
    BadInput("`kdlab nosuch`", static("nosuch"), tested_in="test_cli.py"),
    BadInput(
        "`kdlab train model=nosuch`", static("train", "model=nosuch"), tested_in="test_cli.py"
    ),
    BadInput("`kdlab train data=nosuch`", static("train", "data=nosuch"), tested_in="test_cli.py"),
    BadInput(
        "`kdlab distill loss=nosuch`",
        static("distill", "loss=nosuch"),
        ("unknown loss 'nosuch'", "ce, crd, dist, dkd", "rkd, sp, vid", "(loss=NAME)"),
    ),
    BadInput(
        "`kdlab train optim=nosuch`", static("train", "optim=nosuch"), tested_in="test_cli.py"
    ),
    BadInput(
        "`kdlab fitnet stage2=nosuch`",
        static("fitnet", "stage2=nosuch"),
        ("unknown stage2 'nosuch'", "finetune, frozen"),
    ),
    BadInput(
        "`kdlab fitnet fitnet.regressor=nosuch`",
        static("fitnet", "fitnet.regressor=nosuch"),
        ("unknown fitnet.regressor 'nosuch'", "conv1x1, conv3x3, none"),
    ),
    BadInput("`kdlab distill T=0`", static("distill", "T=0"), ("T must be positive, got 0",)),
    BadInput("`kdlab distill T=-1`", static("distill", "T=-1"), ("T must be positive, got -1",)),
    BadInput(
        "`kdlab distill alpha=-0.1`",
        static("distill", "alpha=-0.1"),
        ("alpha must be in [0, 1]", "got -0.1"),
    ),
    BadInput(
        "`kdlab distill alpha=1.5`",
        static("distill", "alpha=1.5"),
        ("alpha must be in [0, 1]", "got 1.5"),
    ),
    BadInput(
        "`kdlab distill loss=at model=torchvision model.name=vit_b_16`",
        static("distill", "loss=at", "model=torchvision", "model.name=vit_b_16"),
        ("loss=at taps 3 feature point(s) of the student", "has 2 (conv_proj, encoder)"),
    ),
    BadInput(
        "`kdlab train trainer.epochs=0`",
        static("train", "trainer.epochs=0"),
        tested_in="test_cli.py",
    ),
    BadInput(
        "`kdlab train trainer.epochs=-1`",
        static("train", "trainer.epochs=-1"),
        ("trainer.epochs must be positive, got -1", "trainer.epochs=N"),
    ),
    BadInput(
        "`kdlab train trainer.batch_size=0`",
        static("train", "trainer.batch_size=0"),
        ("trainer.batch_size must be positive, got 0",),
    ),
    BadInput("`kdlab train optim.lr=0`", static("train", "optim.lr=0"), tested_in="test_cli.py"),
    BadInput(
        "`kdlab train optim.lr=-0.1`",
        static("train", "optim.lr=-0.1"),
        ("optim.lr must be positive",),
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
        "`teacher.ckpt=MISSING.pt`",
        lambda ws: ["distill", f"teacher.ckpt={ws.root / 'missing.pt'}"],
        tested_in="test_distill_e2e.py",
    ),
    BadInput(
        "`teacher.ckpt=` a truncated checkpoint",
        with_teacher("distill", "abc", "truncated"),
        tested_in="test_distill_e2e.py",
    ),
    BadInput(
        "`teacher.ckpt=` a file that would run code when unpickled",
        lambda ws: ["distill", *FAST, f"teacher.ckpt={ws.crafted}"],
        tested_in="test_reliability.py::test_a_checkpoint_that_would_run_code_is_refused",
    ),
    BadInput(
        "`teacher.ckpt=` a teacher of another data set",
        lambda ws: ["distill", *FAST, f"teacher.ckpt={ws.teacher}"],
        ("was trained on data=imagefolder, this run uses data=synthetic", "teacher.ckpt=PATH"),
    ),
    BadInput(
        "`teacher.ckpt=` a 3-class teacher, 2-class data",
        with_teacher("distill", "ab", "teacher"),
        ("predicts 3 classes, the data has 2", "teacher.ckpt=PATH"),
    ),
    BadInput(
        "`teacher.ckpt=` a teacher of classes a, b, c; data of a, b, d",
        with_teacher("distill", "abd", "teacher"),
        ("has class 2 = 'c', the data has 'd'", "teacher.ckpt=PATH"),
    ),
    BadInput(
        "`kdlab fitnet fitnet.hint_layer=nosuch`",
        with_teacher("fitnet", "abc", "teacher", "fitnet.hint_layer=nosuch"),
        tested_in="test_distill_e2e.py",
    ),
    BadInput(
        "`kdlab fitnet fitnet.regressor=none`, guided and hint shapes differ",
        with_teacher("fitnet", "abc", "teacher", "model=fitnet_student", "fitnet.regressor=none"),
        tested_in="test_distill_e2e.py",
    ),
    BadInput(
        "a NaN loss (`sched=multistep sched.gamma=1e30`: the lr explodes in epoch 2)",
        static("train", *FAST, *BLOW_UP, "sched.milestones=[0.5]"),
        tested_in=f"{RELIABILITY_TESTS}::test_a_nonfinite_loss_stops_the_run_keeping_the_last_good_checkpoint",
    ),
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


CATALOGUE += [
    BadInput(f"`kdlab {c} {o}`", static(c, *o.split()), (f,), preflight=True) for c, o, f in RANGES
]
CATALOGUE += [BadInput(shown, args, lines, preflight=True) for shown, args, lines in DEPLOY]
CATALOGUE += [
    BadInput(
        "`data=imagefolder`, a folder of one class",
        lambda ws: ["train", *FOLDER_RUN, f"data.root={ws.one_class}"],
        ("data=imagefolder has 1 class (a): a classifier needs 2 or more",),
        preflight=True,
    ),
    BadInput(
        "`teacher.ckpt=` a JSON file",
        lambda ws: ["distill", *FAST, f"teacher.ckpt={ws.bad_summary / 'summary.json'}"],
        ("summary.json is not a checkpoint", "give a kdlab .pt file or a run dir"),
    ),
    BadInput(
        "`kdlab report` on a run whose summary.json has a non-numeric accuracy",
        lambda ws: ["report", str(ws.bad_summary), f"--out={ws.root / 'report'}"],
        ('has test_acc="high", not a number', "fix or delete that run dir"),
        preflight=True,
    ),
]


def run_bad_input(case: BadInput, ws: Workspace, run_dir: Path) -> subprocess.CompletedProcess:
    """Run the case (into `run_dir` unless it names its own run dir or is not a Hydra app)."""
    args = case.args(ws)
    hydra_app = args[0] in ("train", "distill", "fitnet")
    if hydra_app and not any(a.startswith("hydra.run.dir=") for a in args):
        args.append(f"hydra.run.dir={run_dir}")
    return run_kdlab(*args, cwd=ws.root)


# --- issue 25 (branch `reliability`): no output over a run's records or an existing file ----
# (a separate block, to carry over as is when the catalogue is restructured)


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
    ),
    BadInput(
        "`kdlab export RUN --format safetensors --out RUN/checkpoints/last.pt`",
        export_to("safetensors", in_teacher("checkpoints", "last.pt")),
        (RECORDS, "pick another --out"),
        preflight=True,
    ),
    BadInput(
        "`kdlab export RUN --out RUN/summary.json`",
        export_to("torchscript", in_teacher("summary.json")),
        (RECORDS, "pick another --out"),
        preflight=True,
    ),
    BadInput(
        "`kdlab export RUN --out RUN/.hydra/config.yaml`",
        export_to("torchscript", in_teacher(".hydra", "config.yaml")),
        (RECORDS, "pick another --out"),
        preflight=True,
    ),
    BadInput(
        "`kdlab export RUN --out EXISTING_FILE` (no --force)",
        export_to("torchscript", lambda ws: ws.regular_file),
        ("a_file exists: add --force to replace it", "pick another --out"),
        preflight=True,
    ),
    BadInput(
        "`kdlab predict RUN IMAGES --csv RUN/summary.json`",
        predict_to(in_teacher("summary.json")),
        (RECORDS, "pick another --csv"),
        preflight=True,
    ),
    BadInput(
        "`kdlab predict RUN IMAGES --csv EXISTING_FILE` (no --force)",
        predict_to(lambda ws: ws.regular_file),
        ("a_file exists: add --force to replace it",),
        preflight=True,
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
    ),
    BadInput(
        "`kdlab report` on a run whose summary.json is not UTF-8",
        lambda ws: ["report", str(not_utf8_summary(ws)), f"--out={ws.root / 'report'}"],
        ("cannot read", "summary.json", "fix or delete that run dir"),
        preflight=True,
    ),
]


# --- issue 25 (branch `reliability`): a checkpoint that differs from its record -------------


def modified_teacher(ws: Workspace) -> Path:
    """A copy of the teacher run whose best.pt was changed (one weight) after its record."""
    import shutil

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
            "distill", *FOLDER_RUN, f"data.root={ws.abc}", f"teacher.ckpt={modified_teacher(ws)}"
        ],
        (DIFFERS, "restore it, or pass teacher.allow_modified=true"),
    ),
]

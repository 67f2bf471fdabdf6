"""The property-based fuzzer (Hypothesis): generated configs and damaged files, each answered
by success or by exit 2 with exactly one `kdlab: error:` line and no traceback, and no file
the command did not create changed.

Three targets, each a default test (25 cases, 15 for the configs; a fixed seed:
`derandomize`) and a slow one (200 cases, a new draw each run):
- the config: `kdlab train|distill` with 1-4 generated overrides of every key of the typed
  config (its type and range, inf and nan, strings where numbers go, null), `~KEY`
  deletions, `+KEY` additions and unknown group options, in-process; most fail at the
  pre-flight. Keys whose valid values cost time (epochs, sizes, workers, compile) draw
  small valid values or invalid ones, and debug=true (which re-raises by design) is left out;
- what a run dir holds: one file of a finished run damaged (truncated, a byte flipped,
  emptied, deleted, replaced by JSON of the wrong shape or bytes that are not UTF-8), then
  `kdlab report`, `export` or `predict` on it, in-process;
- what a data set's loader reads: one file of each data set's tiny copy (image folders, idx
  files, CIFAR archives) damaged the same ways, then the data set built and one batch of
  every split read (kdlab.data.build_data, what every training command calls).
A defect a target found is kept as an `@example` of it (the regression rows).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from harness import FOLDER_RUN, run_kdlab, succeeded
from kdlab.data import build_data
from kdlab.data.imagefolder import write_image_folder
from kdlab.data.registry import DATASETS, data_settings
from kdlab.errors import KdlabError
from kdlab.methods.base import METHODS
from kdlab.methods.names import BUILT_IN
from test_cli import assert_one_line_error

DEFAULT_CASES = 25
# Each generated config pays Hydra's compose in the pre-flight (~1 s on 2 quiet cores, 4 s
# under load): fewer of them in the default suite, the slow set runs 200.
DEFAULT_CONFIG_CASES = 15
SLOW_CASES = 200
FUZZ = {
    "deadline": None,
    "database": None,  # no .hypothesis/ in the working tree
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
fixed_seed = settings(max_examples=DEFAULT_CASES, derandomize=True, **FUZZ)
many = settings(max_examples=SLOW_CASES, **FUZZ)

# The smallest run that trains: most of a generated config's cost is kdlab's start.
BASE = [
    "data=synthetic",
    "data.train_size=32",
    "data.test_size=16",
    "data.val_split=0.002",  # of the 10,000 synthetic images: 20
    "trainer.batch_size=16",
    "trainer.eval_batch_size=64",
    "trainer.epochs=1",
    "trainer.log_every=1",
    "trainer.num_threads=1",
    "model=cnn_student",
]


# --- what a file tree holds --------------------------------------------------------------


def tree_hashes(root: Path, skip: Path | None = None) -> dict[str, str]:
    """sha256 of every file under root (a teacher's logit cache and `skip`, the commands'
    outputs, left out: a command may create and extend those)."""
    hashes = {}
    for path in sorted(root.rglob("*")):
        cache = any(part.endswith(".logits") for part in path.parts)
        if path.is_file() and not cache and not (skip and path.is_relative_to(skip)):
            hashes[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def assert_kept(before: dict[str, str], after: dict[str, str]) -> None:
    """Every file that was there is there, byte for byte (new files may appear)."""
    changed = [p for p, h in before.items() if after.get(p) != h]
    assert not changed, f"changed or deleted: {changed[:5]}"


def assert_answered(proc) -> None:
    """Success, or one `kdlab: error:` line and exit 2; never a traceback."""
    if proc.returncode != 0:
        assert_one_line_error(proc)
    assert "Traceback" not in proc.stderr


# --- the config target --------------------------------------------------------------------

JUNK = st.sampled_from(
    ["abc", "nan", "inf", "-inf", "1e309", "-1", "0", "null", "''", "[1,2]", "[]", "{a: 1}",
     "???", "true", "1.5", "-0.0", "2**40", "1e-30", "${nope}", "x y"]
)  # fmt: skip
INTS = st.one_of(st.integers(-3, 3), st.sampled_from([2**31, 2**63, -(2**40)]))
FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.floats(-2, 2),
    st.sampled_from([1e-30, 1e30, 0.0, 1.0]),
)
CHOICES = {  # the names a key takes, for strings that name something
    "data": ["synthetic", "cifar10", "imagefolder", "mnist", "nosuch"],
    "model": ["cnn_student", "resnet8", "nosuch"],
    "optim": ["sgd", "adamw", "adam", "nosuch"],
    "sched": ["cosine", "multistep", "onecycle", "nosuch"],
    "loss": [*BUILT_IN, "nosuch"],
    "trainer.device": ["auto", "cpu", "cuda", "cuda:7", "mps", "tpu"],
    "trainer.precision": ["auto", "32", "bf16", "fp16", "64"],
    "trainer.progress": ["auto", "on", "off", "maybe"],
    "data.augment": ["auto", "none", "cifar", "nosuch"],
    "data.normalize": ["auto", "dataset", "imagenet", "none", "nosuch"],
    "data.decode": ["auto", "cpu", "device", "nosuch"],
}
# Keys whose large valid values cost minutes: small valid values or invalid ones only.
SMALL = {
    "trainer.epochs": st.integers(1, 2),
    "trainer.batch_size": st.integers(1, 64),
    "trainer.num_threads": st.integers(1, 2),
    "data.train_size": st.integers(1, 64),
    "data.test_size": st.integers(1, 32),
    "data.val_split": st.floats(0, 0.005),
    "data.image_size": st.integers(4, 32),
    "data.num_workers": st.integers(0, 1),
    "trainer.compile": st.just(False),
    "debug": st.just(False),  # debug=true re-raises by design
}


def typed_leaves(command: str) -> dict[str, object]:
    """Every leaf key of the command's config on BASE, with its default; and every method's
    own settings under loss.*."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from kdlab.paths import config_dir
    from kdlab.runs.config import register_configs

    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
        cfg = OmegaConf.to_container(compose(config_name=command, overrides=BASE))
    leaves: dict[str, object] = {}

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                leaves[f"{prefix}{key}"] = value

    walk(cfg, "")
    if command != "train":
        for cls in METHODS.values():
            for f in fields(cls.settings_class):
                leaves.setdefault(f"loss.{f.name}", f.default)
    leaves.pop("command")
    return leaves


def value_for(key: str, default: object) -> st.SearchStrategy[str]:
    """Values of the key's type and range, and what a user might put there instead."""
    if key in SMALL:
        return st.one_of(SMALL[key].map(str), JUNK)
    if key in CHOICES:
        return st.one_of(st.sampled_from(CHOICES[key]), JUNK)
    if isinstance(default, bool):
        return st.one_of(st.sampled_from(["true", "false"]), JUNK)
    if isinstance(default, int):
        return st.one_of(INTS.map(str), JUNK)
    if isinstance(default, float) or default is None:
        return st.one_of(FLOATS.map(repr), INTS.map(str), JUNK)
    if isinstance(default, list):
        return st.one_of(st.lists(FLOATS, max_size=3).map(lambda v: f"[{','.join(map(repr, v))}]"))
    return st.one_of(st.text("abc/._-:", min_size=0, max_size=6), JUNK)


# Values each check of the pre-flight refuses: the default suite's cases hold one, at a
# random place, so they stop before training (a trained case costs seconds).
REFUSED = st.sampled_from(
    ["trainer.epochs=0", "optim.lr=nan", "seed=-1", "sched.gamma=0", "data.train_size=0",
     "trainer.label_smoothing=1", "optim.momentum=inf", "sched.min_lr_ratio=2"]
)  # fmt: skip


@st.composite
def overrides(draw, command: str, refused: bool) -> list[str]:
    """1-4 overrides: a key with a value, a group option, `~KEY` or `+KEY=V` (and one value
    the pre-flight refuses, if `refused`)."""
    leaves = LEAVES[command]
    keys = sorted(leaves)
    chosen = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["value", "value", "value", "group", "delete", "add"]))
        if kind == "group":
            group = draw(st.sampled_from(["data", "model", "optim", "sched", "loss"]))
            if group == "loss" and command == "train":
                group = "optim"
            chosen.append(f"{group}={draw(value_for(group, ''))}")
        elif kind == "delete":
            chosen.append(f"~{draw(st.sampled_from(['trainer', 'optim', 'data.root', 'T', 'x']))}")
        elif kind == "add":
            key = draw(st.sampled_from([*keys, "foo", "trainer.epochz", "data.trian_size"]))
            chosen.append(f"+{key}z=1" if draw(st.booleans()) else f"+{key}=1")
        else:
            key = draw(st.sampled_from(keys))
            chosen.append(f"{key}={draw(value_for(key, leaves[key]))}")
    if refused:
        chosen.insert(draw(st.integers(0, len(chosen))), draw(REFUSED))
    return chosen


LEAVES: dict[str, dict[str, object]] = {}


@pytest.fixture(scope="module")
def config_root(tmp_path_factory) -> Path:
    """The working dir of the generated configs (`teacher`: the teacher.ckpt they name)."""
    for command in ("train", "distill"):
        LEAVES[command] = typed_leaves(command)
    return tmp_path_factory.mktemp("fuzz_config")


@pytest.fixture(scope="module")
def config_root_with_teacher(config_root) -> Path:
    """The same dir with a finished tiny teacher (cnn_student, 1 epoch on BASE), for the
    configs that reach training (the default suite's stop at the pre-flight)."""
    succeeded(run_kdlab("train", *BASE, "hydra.run.dir=teacher", cwd=config_root))
    return config_root


def check_config(root: Path, command: str, generated: list[str]) -> None:
    run = root / "runs" / str(next(counter))
    teacher = [f"teacher.ckpt={root / 'teacher'}", "teacher.cache=false"]
    args = [command, *BASE, *(teacher if command == "distill" else []), *generated]
    before = tree_hashes(root, skip=root / "runs")
    proc = run_kdlab(*args, f"hydra.run.dir={run}", cwd=root)
    assert_answered(proc)
    assert_kept(before, tree_hashes(root, skip=root / "runs"))
    shutil.rmtree(run, ignore_errors=True)


def configs(refused: bool) -> st.SearchStrategy[tuple[str, list[str]]]:
    return st.sampled_from(["train", "distill"]).flatmap(
        lambda command: st.tuples(st.just(command), overrides(command, refused))
    )


@settings(max_examples=DEFAULT_CONFIG_CASES, derandomize=True, **FUZZ)
@given(case=configs(refused=True))
# Found by this target: a config group given a list of numbers reached Hydra's defaults
# tree as ints (TypeError: argument of type 'int' is not iterable).
@example(case=("train", ["sched=[1,2]"]))
@example(case=("distill", ["logger=[1]", "loss=[kd,2]"]))
def test_generated_configs_are_answered_in_one_line(config_root, case):
    check_config(config_root, *case)


@pytest.mark.slow
@many
@given(case=configs(refused=False))
# Found by this target: a key added twice passed the pre-flight and failed in Hydra's run.
@example(case=("distill", ["+trainer.grad_clip=1", "+trainer.grad_clip=1"]))
def test_generated_configs_many(config_root_with_teacher, case):
    check_config(config_root_with_teacher, *case)


# --- damaged files: a run dir, a data set's tiny copy ----------------------------------------

JSON_JUNK = [b"[]", b"{}", b"null", b'"x"', b'{"model": 5}', b'{"test_acc": "high"}', b"\xff\xfe{"]


@st.composite
def damage(draw, files: list[str]) -> tuple[str, str, int]:
    """Which file, how (truncate, flip, empty, delete, junk, torn), and where."""
    name = draw(st.sampled_from(files))
    how = draw(st.sampled_from(["truncate", "flip", "empty", "delete", "junk", "torn"]))
    return name, how, draw(st.integers(0, 2**31))


def apply_damage(root: Path, name: str, how: str, where: int) -> None:
    path = root / name
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: where % max(len(data), 1)])
    elif how == "flip" and data:
        i = where % len(data)
        path.write_bytes(data[:i] + bytes([data[i] ^ (1 << (where % 8))]) + data[i + 1 :])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "delete":
        path.unlink()
    elif how == "junk":
        path.write_bytes(JSON_JUNK[where % len(JSON_JUNK)])
    else:  # a line torn off at the end, as a kill during an append leaves it
        path.write_bytes(data + b'{"epoch": 9, "tr')


def files_of(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def run_root(tmp_path_factory) -> Path:
    """A finished resnet8 run on a tiny image folder (`run`), the folder, the pristine copy."""
    root = tmp_path_factory.mktemp("fuzz_runs")
    folder = write_image_folder(root / "abc", ("a", "b", "c"))
    succeeded(run_kdlab("train", *FOLDER_RUN, f"data.root={folder}", "hydra.run.dir=run", cwd=root))
    return root


COMMANDS = ["report", "export", "predict"]
counter = itertools.count()  # each case's own dir


def check_run_dir(root: Path, command: str, hurt: tuple[str, str, int]) -> None:
    case = root / "cases" / str(next(counter))
    shutil.copytree(root / "run", case)
    apply_damage(case, *hurt)
    out = root / "out" / case.name
    args = {
        "report": ["report", str(case), "--out", str(out)],
        "export": ["export", str(case), "--format", "safetensors", "--out", f"{out}.safetensors"],
        "predict": ["predict", str(case), str(root / "abc" / "test" / "a"), "--csv", f"{out}.csv"],
    }[command]
    before = tree_hashes(root, skip=root / "out")
    proc = run_kdlab(*args, cwd=root)
    assert_answered(proc)
    assert_kept(before, tree_hashes(root, skip=root / "out"))
    shutil.rmtree(case)


RUN_DIR_FILES = [
    "summary.json",
    "metrics.jsonl",
    "train.log",
    ".hydra/config.yaml",
    ".hydra/overrides.yaml",
    "checkpoints/best.pt",
    "checkpoints/best.pt.json",
    "checkpoints/last.pt",
]
RUN_DIR_CASES = st.tuples(st.sampled_from(COMMANDS), damage(RUN_DIR_FILES))


@fixed_seed
@given(case=RUN_DIR_CASES)
# Found by this target: a record best.pt.json whose bytes are not UTF-8 (a flipped bit)
# raised UnicodeDecodeError in export, predict and report (a traceback).
@example(case=("export", ("checkpoints/best.pt.json", "flip", 7)))
def test_damaged_run_dirs_are_answered_in_one_line(run_root, case):
    check_run_dir(run_root, *case)


@pytest.mark.slow
@many
@given(case=RUN_DIR_CASES)
def test_damaged_run_dirs_many(run_root, case):
    check_run_dir(run_root, *case)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """Each data set's tiny copy in its own on-disk format, and its settings."""
    root = tmp_path_factory.mktemp("fuzz_data")
    for name, spec in DATASETS.items():
        if spec.make_tiny is not None:
            (root / "pristine" / name).mkdir(parents=True)  # synthetic writes no file
            settings_of = {"name": name, **spec.make_tiny(root / "pristine" / name)}
            (root / f"{name}.json").write_text(json.dumps(settings_of))
    return root


DATA_SETS = [n for n, spec in DATASETS.items() if spec.make_tiny is not None and n != "synthetic"]


def check_data(root: Path, name: str, pick: int, how: str, where: int) -> None:
    pristine = root / "pristine" / name
    case = root / "cases" / str(next(counter))
    shutil.copytree(pristine, case)
    files = files_of(case)
    if files:
        apply_damage(case, files[pick % len(files)], how, where)
    recorded = json.loads((root / f"{name}.json").read_text())
    moved = {
        k: v.replace(str(pristine), str(case)) if isinstance(v, str) else v
        for k, v in recorded.items()
    }
    before = tree_hashes(case)
    try:
        bundle = build_data(
            data_settings(moved), batch_size=4, eval_batch_size=8, device="cpu", seed=0
        )
        for loader in (bundle.train, bundle.val, bundle.test):
            if loader is not None:
                next(iter(loader))
    except KdlabError as error:
        assert "\n" not in str(error).strip(), str(error)
    assert_kept(before, tree_hashes(case))
    shutil.rmtree(case)


DATA_CASES = st.tuples(
    st.sampled_from(DATA_SETS),
    st.integers(0, 2**16),
    st.sampled_from(["truncate", "flip", "empty", "delete", "junk", "torn"]),
    st.integers(0, 2**31),
)


@fixed_seed
@given(case=DATA_CASES)
# Found by this target: a flipped byte in a CIFAR-100 batch's pickle made a length huge,
# and torchvision's unpickling raised MemoryError (a traceback).
@example(case=("cifar100", 0, "flip", 314))
def test_damaged_data_sets_are_answered_in_one_line(data_root, case):
    check_data(data_root, *case)


@pytest.mark.slow
@many
@given(case=DATA_CASES)
def test_damaged_data_sets_many(data_root, case):
    check_data(data_root, *case)


# --- what `+` and `~` may still do -----------------------------------------------------------


def test_hydra_keys_are_still_added_and_unknown_keys_refused(tmp_path, monkeypatch):
    """The refusal of unknown `+KEY`s leaves Hydra's own keys alone (`+hydra.job.env_set.X=1`,
    `+hydra/job_logging=...`: a launcher's or plugin's settings) and names the key meant."""
    from kdlab.runs.preflight import check_overrides, compose_config

    monkeypatch.chdir(tmp_path)
    hydra_keys = ["+hydra.job.env_set.KDLAB_X=1", "+hydra/job_logging=disabled", "data=synthetic"]
    assert check_overrides("train", hydra_keys, multirun=False).swept == set()
    with pytest.raises(KdlabError, match=r"^unknown setting '\+trainer.epochz': did you mean "):
        compose_config("train", ["+trainer.epochz=5"])

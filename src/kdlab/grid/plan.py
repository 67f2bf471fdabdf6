"""The CIFAR-100 grid of the CRD and DKD papers as a plan of ordinary kdlab jobs.

Teacher-student pairs x methods, each cell trained with the references' recipe. Every job is
a `kdlab train` or `kdlab distill` run in its own dir below the study dir:

    teacher/<arch>/                        the teacher, once per architecture (seed 0)
    baseline/<student>/seed<N>/            the student trained alone: every pair's baseline
    <teacher>-<student>/<method>/seed<N>/  the student distilled (`loss=<method>`)

Seeds always get their own dir, so `seeds=3` later continues a `seeds=1` grid. A cell whose
model or method this kdlab lacks is kept in the plan, marked unavailable, and not run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

from kdlab.errors import KdlabError
from kdlab.methods.registry import METHODS
from kdlab.models import model_names
from kdlab.published import BASELINE

# RepDistiller README / CRD paper Table 1 (same family) and Table 2 (cross family).
SAME_FAMILY = (
    ("wrn_40_2", "wrn_16_2"),
    ("wrn_40_2", "wrn_40_1"),
    ("resnet56", "resnet20"),
    ("resnet110", "resnet20"),
    ("resnet110", "resnet32"),
    ("resnet32x4", "resnet8x4"),
    ("vgg13", "vgg8"),
)
CROSS_FAMILY = (
    ("vgg13", "mobilenetv2"),
    ("resnet50", "mobilenetv2"),
    ("resnet50", "vgg8"),
    ("resnet32x4", "shufflenetv1"),
    ("resnet32x4", "shufflenetv2"),
    ("wrn_40_2", "shufflenetv1"),
)
# The tables' rows, by kdlab's names: `hint` is RepDistiller's FitNet (one jointly trained
# hint term), `baseline` the student alone. Each method runs with its registry defaults.
GRID_METHODS = (
    BASELINE, "kd", "hint", "at", "sp", "cc", "vid", "rkd", "pkt", "ab", "ft", "fsp", "nst",
    "crd", "dkd", "ickd",
)  # fmt: skip
# RepDistiller's KD is `-r 0.1 -a 0.9`: 0.1 on the labels, i.e. kdlab's alpha (hard term).
# MLKD trains on a weak and a strong view of each image.
METHOD_ARGS = {"kd": ("T=4", "alpha=0.1"), "mlkd": ("data.views=weak_strong",)}
# Published rows that are a kdlab method run with other settings: the row's name -> the method
# and the overrides added to (or replacing) its job's. KD+DOT: mdistiller's configs/cifar100/
# dot/*.yaml (KD at T 4, CE 0.1 + KD 0.9, DOT delta 0.075). +ls: logit standardisation as
# tools/train.py of logit-standardization-KD runs it by default (--base-temp 2 --kd-weight 9:
# the presets ls_kd and ls_dkd, spelt out so that they replace the rows' own T and beta; CTKD
# learns its temperature, so only the standardisation and its KD weight 9 carry over).
LS = ("loss.standardize=true", "T=2")
VARIANTS = {
    "kd+dot": ("kd", ("optim=dot",)),
    "kd+ls": ("kd", (*LS, "loss.ce_weight=0.1", "loss.kd_weight=9")),
    "dkd+ls": ("dkd", (*LS, "loss.alpha=9", "loss.beta=72")),
    "mlkd+ls": ("mlkd", (*LS, "loss.weight=9")),
    "ctkd+ls": ("ctkd", ("loss.standardize=true", "loss.weight=9")),
}
# mdistiller configs/cifar100/dkd/<pair>.yaml (@a08d46f) set DKD's beta per pair; the other
# pairs use its default 8 (kdlab's too). Its published DKD figures were made with these.
PAIR_METHOD_ARGS = {
    ("resnet56", "resnet20"): {"dkd": ("loss.beta=2",)},
    ("resnet110", "resnet32"): {"dkd": ("loss.beta=2",)},
    ("wrn_40_2", "wrn_16_2"): {"dkd": ("loss.beta=6",)},
    ("wrn_40_2", "wrn_40_1"): {"dkd": ("loss.beta=6",)},
    ("vgg13", "vgg8"): {"dkd": ("loss.beta=6",)},
    ("vgg13", "mobilenetv2"): {"dkd": ("loss.beta=6",)},
}
# RepDistiller train_student.py / train_teacher.py: lr 0.01 for these, 0.05 otherwise.
SMALL_LR = ("mobilenetv2", "shufflenetv1", "shufflenetv2")
# 240 epochs, batch 64, SGD (momentum 0.9, no nesterov), wd 5e-4, lr x0.1 at 150, 180, 210:
# the milestones are fractions of the run (150/240...), so a shorter run keeps their places.
RECIPE = (
    "data=cifar100",
    "trainer.epochs=240",
    "trainer.batch_size=64",
    "optim=sgd",
    "optim.momentum=0.9",
    "optim.nesterov=false",
    "optim.weight_decay=5e-4",
    "sched=multistep",
    "sched.milestones=[0.625,0.75,0.875]",
    "sched.gamma=0.1",
)
# What the grid decides per job: a user's override of these would break the plan.
OWNED = ("model", "loss", "seed", "teacher.ckpt", "hydra.run.dir", "resume")


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def merge(base: Sequence[str], extra: Sequence[str]) -> list[str]:
    """`base` with each override of `extra` replacing the one of the same key (or added)."""
    keys = {override_key(o) for o in extra}
    return [o for o in base if override_key(o) not in keys] + list(extra)


def recipe(arch: str, overrides: Sequence[str]) -> list[str]:
    lr = 0.01 if arch in SMALL_LR else 0.05
    return merge([*RECIPE, f"optim.lr={lr}"], overrides)


@dataclass(frozen=True)
class Pair:
    teacher: str
    student: str

    @property
    def name(self) -> str:
        return f"{self.teacher}-{self.student}"

    @property
    def family(self) -> str:
        key = (self.teacher, self.student)
        return "same" if key in SAME_FAMILY else "cross" if key in CROSS_FAMILY else "other"


@dataclass(frozen=True)
class Job:
    """One kdlab run of the plan: its dir below the study dir, command and overrides."""

    sub: str
    command: str  # train | distill
    args: tuple[str, ...]
    model: str  # the model it trains
    teacher: str = ""  # distill: the teacher's architecture (its run comes first)

    @property
    def is_teacher(self) -> bool:
        return self.sub.startswith("teacher/")

    def setting(self, key: str) -> str | None:
        """The value this job's overrides give `key` (the last one wins), or None."""
        values = [o.split("=", 1)[1] for o in self.args if override_key(o) == key]
        return values[-1] if values else None

    @property
    def init_epochs(self) -> int:
        """The epochs of the method's init stage (AB, FT, FSP: loss.init_epochs), else 0."""
        method = METHODS.get(self.setting("loss") or "")
        if self.command != "distill" or method is None:
            return 0
        default = {f.name: f.default for f in fields(method.settings_class)}.get("init_epochs", 0)
        return int(self.setting("loss.init_epochs") or default)

    @property
    def epochs(self) -> int:
        """Every epoch the run trains: its own and its method's init stage's."""
        return int(self.setting("trainer.epochs") or 0) + self.init_epochs


@dataclass(frozen=True)
class Cell:
    """One (pair, method) of the grid: the jobs of its seeds, or why it cannot run."""

    pair: Pair
    method: str
    subs: tuple[str, ...] = ()
    unavailable: str = ""


@dataclass
class Plan:
    teachers: dict[str, str]  # arch -> what distill runs get as teacher.ckpt
    jobs: list[Job] = field(default_factory=list)
    cells: list[Cell] = field(default_factory=list)

    @property
    def given(self) -> dict[str, str]:
        """The teachers given with --teacher (no run of the plan)."""
        trained = {job.model for job in self.jobs if job.is_teacher}
        return {arch: path for arch, path in self.teachers.items() if arch not in trained}


def parse_pairs(text: str) -> list[Pair]:
    """`all` | `same` | `cross` | `TEACHER-STUDENT,...` (any two zoo models)."""
    named = {"all": SAME_FAMILY + CROSS_FAMILY, "same": SAME_FAMILY, "cross": CROSS_FAMILY}
    pairs: list[Pair] = []
    for item in filter(None, text.split(",")):
        if item in named:
            pairs += [Pair(*pair) for pair in named[item]]
            continue
        teacher, sep, student = item.partition("-")
        grid = {arch for pair in SAME_FAMILY + CROSS_FAMILY for arch in pair}
        unknown = [a for a in (teacher, student) if a not in model_names() and a not in grid]
        if not sep or not teacher or not student or unknown:
            raise KdlabError(
                f"pairs: '{item}' is not TEACHER-STUDENT of two models (kdlab models lists "
                "them): pairs=all|same|cross|resnet56-resnet20,..."
            )
        pairs.append(Pair(teacher, student))
    if not pairs:
        raise KdlabError("pairs= names no pair: pairs=all|same|cross|resnet56-resnet20,...")
    return list(dict.fromkeys(pairs))


def parse_methods(text: str) -> list[str]:
    """`all` (the grid's rows) | `NAME,...` of the grid's rows, kdlab's methods or the
    published variants (kd+dot, ...)."""
    methods: list[str] = []
    for item in filter(None, text.split(",")):
        if item == "all":
            methods += GRID_METHODS
        elif item in GRID_METHODS or item in METHODS or item in VARIANTS:
            methods.append(item)
        else:
            choices = ", ".join(dict.fromkeys([*GRID_METHODS, *METHODS, *VARIANTS]))
            raise KdlabError(f"methods: unknown method '{item}': choose all or some of {choices}")
    if not methods:
        raise KdlabError("methods= names no method: methods=all|kd,dkd,...")
    return list(dict.fromkeys(methods))


def missing(pair: Pair, method: str) -> str:
    """Why a cell cannot run in this kdlab ('' when it can)."""
    needed = [pair.student] if method == BASELINE else [pair.teacher, pair.student]
    models = [arch for arch in dict.fromkeys(needed) if arch not in model_names()]
    if models:
        return f"model {', '.join(models)} not available in this kdlab"
    if method != BASELINE and VARIANTS.get(method, (method,))[0] not in METHODS:
        return f"method {method} not available in this kdlab"
    return ""


def build_plan(
    pairs: Sequence[Pair],
    methods: Sequence[str],
    seeds: int,
    overrides: Sequence[str],
    given: dict[str, str],
    study_dir: Path,
) -> Plan:
    """Teachers first (those not `given`: arch -> checkpoint), then each student's baseline,
    then the distillation runs, pair by pair."""
    plan = Plan(teachers=dict(given))
    cells = [Cell(p, m, unavailable=missing(p, m)) for p in pairs for m in methods]
    taught = [c.pair.teacher for c in cells if c.method != BASELINE and not c.unavailable]
    for arch in dict.fromkeys(taught):
        if arch not in given:
            job = Job(f"teacher/{arch}", "train", (*recipe(arch, overrides), f"model={arch}",
                      "seed=0"), arch)  # fmt: skip
            plan.jobs.append(job)
            plan.teachers[arch] = str(study_dir / job.sub)
    done: set[str] = set()
    for cell in cells:
        subs = [] if cell.unavailable else [_cell_sub(cell, seed) for seed in range(seeds)]
        plan.cells.append(Cell(cell.pair, cell.method, tuple(subs), cell.unavailable))
        for seed, sub in enumerate(subs):
            if sub not in done:
                done.add(sub)
                plan.jobs.append(_student_job(cell, sub, seed, overrides, plan.teachers))
    return plan


def _cell_sub(cell: Cell, seed: int) -> str:
    if cell.method == BASELINE:
        return f"baseline/{cell.pair.student}/seed{seed}"
    return f"{cell.pair.name}/{cell.method}/seed{seed}"


def _student_job(
    cell: Cell, sub: str, seed: int, overrides: Sequence[str], teachers: dict[str, str]
) -> Job:
    student = cell.pair.student
    args = [*recipe(student, overrides), f"model={student}", f"seed={seed}"]
    if cell.method == BASELINE:
        return Job(sub, "train", tuple(args), student)
    loss, variant = VARIANTS.get(cell.method, (cell.method, ()))
    pair_args = PAIR_METHOD_ARGS.get((cell.pair.teacher, student), {}).get(loss, ())
    args = merge([*args, f"loss={loss}", *METHOD_ARGS.get(loss, ()), *pair_args], variant)
    args.append(f"teacher.ckpt={teachers[cell.pair.teacher]}")
    return Job(sub, "distill", tuple(args), student, cell.pair.teacher)

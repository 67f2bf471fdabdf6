"""The range checks every setting shares (one-line KdlabErrors), and the checks of the
settings that need nothing but their own values (seed, trainer.*, optim.*, sched.*, T, alpha,
teacher.cache_dir, fitnet.*; a device's name): torch-free, so the CLI's first look at the
overrides (kdlab.runs.screen) runs them before torch is imported. kdlab.runs.validation runs
them on the whole config, with the checks that need torch, a registry or another key."""

from __future__ import annotations

import math
from pathlib import Path

from kdlab.engine.settings import OPTIMIZERS, SCHEDULES, OptimConfig, SchedConfig, TrainerConfig
from kdlab.errors import KdlabError
from kdlab.runs.distill_settings import REGRESSORS, FitnetConfig, TeacherConfig

PRECISIONS = ("32", "bf16", "fp16", "auto")
PROGRESS = ("auto", "on", "off")
# The smallest temperature: the soft term is scaled by T^2 and its logits divided by T. At
# T=1e-2, T^2 = 1e-4 and a logit of 100 becomes 1e4, inside fp16's range (65504); far below
# it T^2 underflows (T=1e-30: T^2 = 1e-60 is 0 in float32, whose smallest value is 1.4e-45)
# and logits/T overflow, so the soft term is 0 or NaN. No method uses a T under 0.1.
MIN_T = 1e-2


def require(ok: bool, message: str) -> None:
    if not ok:
        raise KdlabError(message)


def choice(value: str, valid: tuple[str, ...] | list[str], key: str) -> None:
    require(
        value in valid, f"unknown {key} '{value}': choose one of {', '.join(valid)} ({key}=NAME)"
    )


def finite(value: float, key: str) -> None:
    require(math.isfinite(value), f"{key} must be a finite number, got {value}")


def positive(value: float, key: str) -> None:
    finite(value, key)
    require(value > 0, f"{key} must be positive, got {value} (set {key}=N with N > 0)")


def within(value: float, low: float, high: float, key: str, closed: str = "[)") -> None:
    """low <= value < high (`closed` says which ends belong: "[)", "[]", "()")."""
    finite(value, key)
    above = value >= low if closed[0] == "[" else value > low
    below = value <= high if closed[1] == "]" else value < high
    require(above and below, f"{key} must be in {closed[0]}{low}, {high}{closed[1]}, got {value}")


def at_least_zero(value: float, key: str) -> None:
    finite(value, key)
    require(value >= 0, f"{key} must be >= 0, got {value}")


def check_trainer_values(t: TrainerConfig) -> None:
    """trainer.*'s ranges (the batch's split over torchrun processes is validation's)."""
    positive(t.epochs, "trainer.epochs")
    positive(t.batch_size, "trainer.batch_size")
    positive(t.eval_batch_size, "trainer.eval_batch_size")
    positive(t.log_every, "trainer.log_every")
    choice(str(t.precision), PRECISIONS, "trainer.precision")
    choice(t.progress, PROGRESS, "trainer.progress")
    within(t.label_smoothing, 0, 1, "trainer.label_smoothing")
    if t.grad_clip is not None:
        positive(t.grad_clip, "trainer.grad_clip")
    if t.num_threads is not None:
        positive(t.num_threads, "trainer.num_threads")


def check_batch_split(batch_size: int, ranks: int) -> None:
    """The global batch splits evenly over the `ranks` torchrun processes."""
    require(
        batch_size % ranks == 0,
        f"trainer.batch_size={batch_size} (the global batch) is not divisible by the "
        f"{ranks} torchrun processes: pick a multiple of {ranks}",
    )


def check_seed(seed: int) -> None:
    within(seed, 0, 2**32, "seed")  # NumPy's seed range


def check_device_name(device: str) -> None:
    """A device name torch.device parses (whether this machine has it is validation's)."""
    kind, _, index = device.partition(":")
    require(
        device == "auto" or (kind in ("cpu", "cuda", "mps") and (not index or index.isdigit())),
        f"unknown trainer.device '{device}': use auto, cpu, cuda, cuda:N or mps",
    )


def check_cuda_index(device: str, count: int) -> None:
    """trainer.device=cuda[:N] names one of this machine's `count` CUDA GPUs."""
    kind, _, index = device.partition(":")
    if kind != "cuda":
        return
    require(
        int(index or 0) < count,
        f"trainer.device={device} but this machine has {count} CUDA GPU(s): "
        + ("use trainer.device=cpu" if not count else f"use cuda:0 to cuda:{count - 1}"),
    )


def check_fp16_device(precision: str, on_cpu: bool) -> None:
    """fp16 autocast on a CPU is emulated: one 300-image epoch did not end in 5 minutes."""
    require(
        precision != "fp16" or not on_cpu,
        "trainer.precision=fp16 on a CPU is emulated and crawls (minutes per small epoch): use "
        "trainer.precision=bf16 or trainer.precision=32 (auto picks bf16 where the CPU has it)",
    )


def check_optim_values(o: OptimConfig) -> None:
    """optim.*'s ranges (optim=dot's momenta and what it runs with are validation's)."""
    choice(o.name, list(OPTIMIZERS), "optim")
    positive(o.lr, "optim.lr")
    at_least_zero(o.weight_decay, "optim.weight_decay")
    within(o.momentum, 0, 1, "optim.momentum")
    require(len(o.betas) == 2, f"optim.betas needs 2 values, got {list(o.betas)}")
    for i, beta in enumerate(o.betas):
        within(beta, 0, 1, f"optim.betas[{i}]")


def check_dot(o: OptimConfig, t: TrainerConfig, distill: bool, ranks: int) -> None:
    """optim=dot: two momenta in [0, 1), and a step of two backward passes (distillation,
    then task) that kdlab distill (`distill`) runs in one process (`ranks`) without loss
    scaling or clipping."""
    at_least_zero(o.delta, "optim.delta")
    require(
        o.delta <= o.momentum and o.momentum + o.delta < 1,
        f"optim.delta={o.delta} must keep both momenta (optim.momentum={o.momentum} -+ delta) "
        "in [0, 1): the reference is momentum 0.9, delta 0.075",
    )
    require(distill, "optim=dot splits a distillation loss from the task loss: use kdlab distill")
    require(ranks == 1, f"optim=dot runs in one process, not under torchrun ({ranks} processes)")
    two = "optim=dot steps two gradients"
    require(str(t.precision) != "fp16", f"{two}: use trainer.precision=bf16 or 32, not fp16")
    require(t.grad_clip is None, f"{two}: trainer.grad_clip is not supported with it")
    require(not t.compile, f"{two} by two backward passes: set trainer.compile=false")


def check_sched_values(s: SchedConfig, epochs: int | None) -> None:
    """sched.*'s ranges; the warm-up against `epochs` (trainer.epochs) where it is known."""
    choice(s.name, list(SCHEDULES), "sched")
    at_least_zero(s.warmup_epochs, "sched.warmup_epochs")
    require(
        epochs is None or s.warmup_epochs < epochs or s.warmup_epochs == 0,
        f"sched.warmup_epochs ({s.warmup_epochs}) must be shorter than trainer.epochs ({epochs})",
    )
    within(s.min_lr_ratio, 0, 1, "sched.min_lr_ratio", "[]")
    for i, milestone in enumerate(s.milestones):
        within(milestone, 0, 1, f"sched.milestones[{i}] (a fraction of training)", "()")
    require(
        all(a < b for a, b in zip(s.milestones, s.milestones[1:], strict=False)),
        f"sched.milestones must ascend, got {list(s.milestones)}",
    )
    positive(s.gamma, "sched.gamma")
    within(s.pct_start, 0, 1, "sched.pct_start", "()")


def check_temperature(T: float) -> None:
    """T divides the logits of the soft term and T^2 scales it."""
    finite(T, "T")
    require(T > 0, f"T must be positive, got {T} (e.g. T=4)")
    require(
        T >= MIN_T,
        f"T={T} is too small: T^2 scales the soft term and logits/T overflow below "
        f"T={MIN_T}, so the loss is 0 or NaN: use T >= {MIN_T} (e.g. T=4)",
    )


def check_alpha(alpha: float) -> None:
    require(
        0.0 <= alpha <= 1.0,
        f"alpha must be in [0, 1] (it weighs the hard-label term), got {alpha}",
    )


def check_cache_dir(cache_dir: str | None) -> None:
    """The logit cache's store is a directory (made when missing): refuse a file before
    training ('' and null keep it beside the teacher checkpoint)."""
    if not cache_dir:
        return
    path = Path(cache_dir).expanduser()
    require(
        not path.exists() or path.is_dir(),
        f"teacher.cache_dir={cache_dir} is a file, not a directory: name a directory (it is "
        "created), or null to keep the cache beside the teacher checkpoint",
    )


def check_teacher_count(teacher: TeacherConfig, resume: bool, fitnet: bool) -> int:
    """teacher.ckpt's paths and teacher.weights agree, and kdlab fitnet (`fitnet`) has one
    teacher; the number of teachers named (whether the method takes several is
    kdlab.runs.validation's: it needs the method's class)."""
    ckpt = teacher.ckpt
    paths = ckpt if isinstance(ckpt, list) else [ckpt]
    require(
        ckpt is None or (bool(paths) and all(isinstance(p, str) and p for p in paths)),
        f"teacher.ckpt must be a path or a list of paths (teacher.ckpt=[A,B]), got {ckpt!r}",
    )
    count = len(teacher.checkpoints())
    weights = teacher.weights
    if weights is not None:
        for i, weight in enumerate(weights):
            at_least_zero(weight, f"teacher.weights[{i}]")
        require(sum(weights) > 0, "teacher.weights sum to 0: give one teacher a weight > 0")
        if count or not resume:  # a resume without teacher.ckpt: its pinned teachers
            teacher.normalised_weights(count or 1)
    if count > 1 and fitnet:
        reason = "its hint stage reads the teacher's features"
        raise KdlabError(f"kdlab fitnet takes one teacher ({reason}); teacher.ckpt has {count}")
    return count


def check_fitnet_values(f: FitnetConfig) -> None:
    """fitnet.*'s ranges (its hint and guided layers are checked against the models)."""
    choice(f.regressor, REGRESSORS, "fitnet.regressor")
    positive(f.stage1_lr, "fitnet.stage1_lr")
    if f.stage1_epochs is not None:
        positive(f.stage1_epochs, "fitnet.stage1_epochs")
    at_least_zero(f.finetune_lr_scale, "fitnet.finetune_lr_scale")

"""The one check of a composed config: every range and name Hydra's typed schemas cannot
express, before anything is loaded or written.

Checks that need a package's knowledge (a data set's fields, a model's options) live in that
package and are called from here, so each is written once.
"""

from __future__ import annotations

from kdlab.config import STAGE2_MODES, DistillConfig, FitnetRunConfig, RunConfig
from kdlab.data import check_data_settings
from kdlab.distributed import world_size
from kdlab.errors import KdlabError
from kdlab.methods.checks import check_loss_settings, check_stage2_loss, check_student_taps
from kdlab.models import check_model_choice
from kdlab.optim import OPTIMIZERS, SCHEDULES

PRECISIONS = ("32", "bf16", "fp16", "auto")
PROGRESS = ("auto", "on", "off")
REGRESSORS = ("conv1x1", "conv3x3", "none")


def require(ok: bool, message: str) -> None:
    if not ok:
        raise KdlabError(message)


def choice(value: str, valid: tuple[str, ...] | list[str], key: str) -> None:
    require(
        value in valid, f"unknown {key} '{value}': choose one of {', '.join(valid)} ({key}=NAME)"
    )


def positive(value: float, key: str) -> None:
    require(value > 0, f"{key} must be positive, got {value} (set {key}=N with N > 0)")


def validate(cfg: RunConfig) -> None:
    """Raise a one-line KdlabError for the first bad value of `cfg`."""
    check_trainer(cfg)
    check_optimisation(cfg)
    check_data_settings(cfg.data)
    if isinstance(cfg, DistillConfig):
        check_distillation(cfg)
    if isinstance(cfg, FitnetRunConfig):
        check_fitnet(cfg)
    check_model_choice(cfg.model)
    if isinstance(cfg, DistillConfig):
        check_student_taps(cfg.loss, cfg.model)


def check_trainer(cfg: RunConfig) -> None:
    t = cfg.trainer
    positive(t.epochs, "trainer.epochs")
    positive(t.batch_size, "trainer.batch_size")
    ranks = world_size()
    require(
        t.batch_size % ranks == 0,
        f"trainer.batch_size={t.batch_size} (the global batch) is not divisible by the "
        f"{ranks} torchrun processes: pick a multiple of {ranks}",
    )
    positive(t.eval_batch_size, "trainer.eval_batch_size")
    positive(t.log_every, "trainer.log_every")
    choice(str(t.precision), PRECISIONS, "trainer.precision")
    choice(t.progress, PROGRESS, "trainer.progress")
    require(
        0.0 <= t.label_smoothing < 1.0,
        f"trainer.label_smoothing must be in [0, 1), got {t.label_smoothing}",
    )
    if t.grad_clip is not None:
        positive(t.grad_clip, "trainer.grad_clip")
    require(
        t.device == "auto" or t.device.split(":")[0] in ("cpu", "cuda", "mps"),
        f"unknown trainer.device '{t.device}': use auto, cpu, cuda, cuda:N or mps",
    )


def check_optimisation(cfg: RunConfig) -> None:
    choice(cfg.optim.name, list(OPTIMIZERS), "optim")
    positive(cfg.optim.lr, "optim.lr")
    require(cfg.optim.weight_decay >= 0, "optim.weight_decay must be >= 0")
    choice(cfg.sched.name, list(SCHEDULES), "sched")
    require(cfg.sched.warmup_epochs >= 0, "sched.warmup_epochs must be >= 0")
    require(
        cfg.sched.warmup_epochs < cfg.trainer.epochs or cfg.sched.warmup_epochs == 0,
        f"sched.warmup_epochs ({cfg.sched.warmup_epochs}) must be shorter than "
        f"trainer.epochs ({cfg.trainer.epochs})",
    )


def check_distillation(cfg: DistillConfig) -> None:
    check_loss_settings(cfg.loss)
    require(cfg.T > 0, f"T must be positive, got {cfg.T} (e.g. T=4)")
    require(
        0.0 <= cfg.alpha <= 1.0,
        f"alpha must be in [0, 1] (it weighs the hard-label term), got {cfg.alpha}",
    )


def check_fitnet(cfg: FitnetRunConfig) -> None:
    f = cfg.fitnet
    choice(cfg.stage2.mode, STAGE2_MODES, "stage2")
    check_stage2_loss(cfg.loss)
    choice(f.regressor, REGRESSORS, "fitnet.regressor")
    positive(f.stage1_lr, "fitnet.stage1_lr")
    if f.stage1_epochs is not None:
        positive(f.stage1_epochs, "fitnet.stage1_epochs")
    require(f.finetune_lr_scale >= 0, "fitnet.finetune_lr_scale must be >= 0")

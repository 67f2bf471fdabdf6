"""The one check of a composed config: every range and name Hydra's typed schemas cannot
express, before anything is loaded or written.

Checks that need a package's knowledge (a data set's fields, a model's options) live in that
package and are called from here, so each is written once. Every field has a stated range;
every float must be finite (`inf` and `nan` parse as floats):

| field | valid |
|---|---|
| seed | 0 <= seed < 2**32 (NumPy's seed range) |
| trainer.epochs, batch_size, eval_batch_size, log_every | int >= 1 (batch_size: a multiple |
| | of the torchrun processes) |
| trainer.device | auto, cpu, mps, cuda, cuda:N with N < the visible GPUs (mps/cuda: available) |
| trainer.precision, progress | one of PRECISIONS, PROGRESS; fp16 not on a CPU |
| trainer.label_smoothing | [0, 1) |
| trainer.grad_clip | null or > 0 |
| trainer.num_threads | null or >= 1 |
| trainer.channels_last, compile, deterministic, skip_nonfinite | bool (typed) |
| optim | one of OPTIMIZERS; lr > 0; weight_decay >= 0; momentum in [0, 1); |
| | betas: 2 values in [0, 1); dot: delta in [0, momentum], momentum + delta < 1, |
| | kdlab distill only, one process, no fp16, grad_clip or compile |
| sched | one of SCHEDULES; warmup_epochs in [0, trainer.epochs) (or 0); min_lr_ratio in |
| | [0, 1]; milestones ascending in (0, 1); gamma > 0 (may exceed 1: an lr rise); |
| | pct_start in (0, 1) |
| data.* | kdlab.data.settings.check_common (and the data set's own check) |
| data.views | the views the method reads (kdlab.methods.checks.check_views): weak_strong |
| | for loss=mlkd only |
| loss, T, alpha | one of LOSSES, its numbers finite; T >= MIN_T; alpha in [0, 1] |
| teacher.model | a registered model; ckpt, search_dir: paths checked when read |
| teacher.cache_dir | null or a path that is not a file |
| teacher.ckpt | null, a path or a non-empty list of paths; several only for a method that |
| | takes several (Method.one_teacher empty) and not for fitnet |
| teacher.weights | null, or one finite weight >= 0 per teacher, summing to > 0 (a resume |
| | without teacher.ckpt: counted against its pinned teachers when they are read) |
| teacher.cache, allow_modified | bool (typed) |
| stage2, fitnet.regressor | one of STAGE2_MODES, REGRESSORS |
| fitnet.stage1_epochs | null or >= 1 (stage two has its own trainer.epochs) |
| fitnet.stage1_lr | > 0; finetune_lr_scale >= 0; hint/guided_layer: checked against the models |
| model.* | the model's own options (kdlab.models: names, pretrained weights present and fitting) |
| logger | the chosen trackers' packages installed (mlflow, wandb); logger.wandb.mode one of |
| | WANDB_MODES |
| model.freeze_epochs | int in [0, trainer.epochs); > 0 only with pretrained weights, not fitnet |
"""

from __future__ import annotations

import torch

from kdlab.data import check_batch_memory, check_data_settings
from kdlab.engine.distributed import world_size
from kdlab.engine.trackers import check_trackers
from kdlab.errors import KdlabError
from kdlab.methods.checks import (
    check_loss_settings,
    check_stage2_loss,
    check_student_taps,
    check_views,
)
from kdlab.methods.registry import method
from kdlab.models import check_model_choice, freeze_epochs, model_names
from kdlab.runs.config import DistillConfig, FitnetRunConfig, RunConfig
from kdlab.runs.distill_settings import STAGE2_MODES
from kdlab.runs.ranges import (
    at_least_zero,
    check_alpha,
    check_cache_dir,
    check_device_name,
    check_fitnet_values,
    check_optim_values,
    check_sched_values,
    check_seed,
    check_temperature,
    check_trainer_values,
    choice,
    require,
)


def validate(cfg: RunConfig) -> None:
    """Raise a one-line KdlabError for the first bad value of `cfg`."""
    check_seed(cfg.seed)
    check_trainer(cfg)
    check_device(cfg.trainer.device)
    check_precision_device(str(cfg.trainer.precision), cfg.trainer.device)
    check_optimisation(cfg)
    check_schedule(cfg)
    check_data_settings(cfg.data)
    check_batch_memory(cfg.data, max(cfg.trainer.batch_size, cfg.trainer.eval_batch_size))
    check_trackers(cfg.logger)
    if isinstance(cfg, DistillConfig):
        check_distillation(cfg)
    plain = not isinstance(cfg, DistillConfig) or isinstance(cfg, FitnetRunConfig)
    check_views(None if plain else cfg.loss.name, cfg.data.views)
    if isinstance(cfg, FitnetRunConfig):
        check_fitnet(cfg)
    check_model_choice(cfg.model, pretrained=not cfg.resume)  # resumed: weights from last.pt
    check_freeze_epochs(cfg)
    if isinstance(cfg, DistillConfig):
        check_student_taps(cfg.loss, cfg.model)


def check_freeze_epochs(cfg: RunConfig) -> None:
    """model.freeze_epochs leaves epochs for the whole model, in a command of one stage."""
    frozen = freeze_epochs(cfg.model)
    if not frozen:
        return
    require(
        not isinstance(cfg, FitnetRunConfig),
        "kdlab fitnet trains its own stages (hint, then KD): drop model.freeze_epochs",
    )
    require(
        frozen < cfg.trainer.epochs,
        f"model.freeze_epochs={frozen} leaves no epoch to train the whole model: make it "
        f"smaller than trainer.epochs={cfg.trainer.epochs}",
    )


def check_trainer(cfg: RunConfig) -> None:
    t = cfg.trainer
    check_trainer_values(t)
    ranks = world_size()
    require(
        t.batch_size % ranks == 0,
        f"trainer.batch_size={t.batch_size} (the global batch) is not divisible by the "
        f"{ranks} torchrun processes: pick a multiple of {ranks}",
    )


def check_device(device: str) -> None:
    """A device this machine has, before anything starts (torch.device parses the name)."""
    check_device_name(device)
    kind, _, index = device.partition(":")
    if kind == "cuda":
        count = torch.cuda.device_count()
        require(
            int(index or 0) < count,
            f"trainer.device={device} but this machine has {count} CUDA GPU(s): "
            + ("use trainer.device=cpu" if not count else f"use cuda:0 to cuda:{count - 1}"),
        )
    if kind == "mps":
        require(
            torch.backends.mps.is_available(),
            f"trainer.device={device} but MPS is not available: use trainer.device=cpu",
        )


def check_precision_device(precision: str, device: str) -> None:
    """fp16 autocast on a CPU is emulated: one 300-image epoch did not end in 5 minutes."""
    if precision != "fp16":
        return
    on_cpu = device.startswith("cpu") or (
        device == "auto" and not torch.cuda.is_available() and not torch.backends.mps.is_available()
    )
    require(
        not on_cpu,
        "trainer.precision=fp16 on a CPU is emulated and crawls (minutes per small epoch): use "
        "trainer.precision=bf16 or trainer.precision=32 (auto picks bf16 where the CPU has it)",
    )


def check_optimisation(cfg: RunConfig) -> None:
    check_optim_values(cfg.optim)
    if cfg.optim.name == "dot":
        check_dot(cfg)


def check_dot(cfg: RunConfig) -> None:
    """optim=dot: two momenta in [0, 1), and a step of two backward passes (distillation,
    then task) that kdlab distill runs in one process without loss scaling or clipping."""
    o, t = cfg.optim, cfg.trainer
    at_least_zero(o.delta, "optim.delta")
    require(
        o.delta <= o.momentum and o.momentum + o.delta < 1,
        f"optim.delta={o.delta} must keep both momenta (optim.momentum={o.momentum} -+ delta) "
        "in [0, 1): the reference is momentum 0.9, delta 0.075",
    )
    distill = isinstance(cfg, DistillConfig) and not isinstance(cfg, FitnetRunConfig)
    require(distill, "optim=dot splits a distillation loss from the task loss: use kdlab distill")
    require(
        world_size() == 1,
        f"optim=dot runs in one process, not under torchrun ({world_size()} processes)",
    )
    two = "optim=dot steps two gradients"
    require(str(t.precision) != "fp16", f"{two}: use trainer.precision=bf16 or 32, not fp16")
    require(t.grad_clip is None, f"{two}: trainer.grad_clip is not supported with it")
    require(not t.compile, f"{two} by two backward passes: set trainer.compile=false")


def check_schedule(cfg: RunConfig) -> None:
    check_sched_values(cfg.sched, cfg.trainer.epochs)


def check_distillation(cfg: DistillConfig) -> None:
    check_loss_settings(cfg.loss)
    check_temperature(cfg.T)
    check_alpha(cfg.alpha)
    choice(cfg.teacher.model, model_names(), "teacher.model")
    check_teachers(cfg)
    check_cache_dir(cfg.teacher.cache_dir)


def check_teachers(cfg: DistillConfig) -> None:
    """teacher.ckpt's paths and teacher.weights agree, and the command takes that many."""
    ckpt = cfg.teacher.ckpt
    paths = ckpt if isinstance(ckpt, list) else [ckpt]
    require(
        ckpt is None or (bool(paths) and all(isinstance(p, str) and p for p in paths)),
        f"teacher.ckpt must be a path or a list of paths (teacher.ckpt=[A,B]), got {ckpt!r}",
    )
    count = len(cfg.teacher.checkpoints())
    weights = cfg.teacher.weights
    if weights is not None:
        for i, weight in enumerate(weights):
            at_least_zero(weight, f"teacher.weights[{i}]")
        require(sum(weights) > 0, "teacher.weights sum to 0: give one teacher a weight > 0")
        if count or not cfg.resume:  # a resume without teacher.ckpt: its pinned teachers
            cfg.teacher.normalised_weights(count or 1)
    if count <= 1:
        return
    if isinstance(cfg, FitnetRunConfig):
        reason = "its hint stage reads the teacher's features"
        raise KdlabError(f"kdlab fitnet takes one teacher ({reason}); teacher.ckpt has {count}")
    reason = method(cfg.loss.name).one_teacher
    require(
        not reason,
        f"loss={cfg.loss.name} takes one teacher ({reason}); teacher.ckpt has {count}: name "
        "one, or average several with a logit method (loss=kd, dkd, dist, ...)",
    )


def check_fitnet(cfg: FitnetRunConfig) -> None:
    choice(cfg.stage2.mode, STAGE2_MODES, "stage2")
    check_stage2_loss(cfg.loss)
    check_fitnet_values(cfg.fitnet)

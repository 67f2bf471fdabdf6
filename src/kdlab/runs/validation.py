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
from kdlab.methods.checks import (
    check_loss_settings,
    check_stage2_loss,
    check_student_taps,
    check_views,
)
from kdlab.methods.names import check_teachers_taken
from kdlab.methods.registry import method
from kdlab.models import check_model_choice, freeze_epochs, model_names
from kdlab.runs.distill_settings import STAGE2_MODES
from kdlab.runs.ranges import (
    check_alpha,
    check_batch_split,
    check_cache_dir,
    check_cuda_index,
    check_device_name,
    check_dot,
    check_fitnet_values,
    check_fp16_device,
    check_optim_values,
    check_sched_values,
    check_seed,
    check_teacher_count,
    check_temperature,
    check_trainer_values,
    choice,
    require,
)
from kdlab.runs.schema import DistillConfig, FitnetRunConfig, RunConfig


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
    check_trainer_values(cfg.trainer)
    check_batch_split(cfg.trainer.batch_size, world_size())


def check_device(device: str) -> None:
    """A device this machine has, before anything starts (torch.device parses the name)."""
    check_device_name(device)
    if device.startswith("cuda"):  # counting the GPUs initialises CUDA: only when asked for
        check_cuda_index(device, torch.cuda.device_count())
    if device.startswith("mps"):
        require(
            torch.backends.mps.is_available(),
            f"trainer.device={device} but MPS is not available: use trainer.device=cpu",
        )


def check_precision_device(precision: str, device: str) -> None:
    """trainer.precision=fp16 where the run lands on a CPU (auto: no CUDA GPU, no MPS)."""
    on_cpu = device.startswith("cpu") or (
        device == "auto" and not torch.cuda.is_available() and not torch.backends.mps.is_available()
    )
    check_fp16_device(precision, on_cpu)


def check_optimisation(cfg: RunConfig) -> None:
    check_optim_values(cfg.optim)
    if cfg.optim.name == "dot":
        distill = isinstance(cfg, DistillConfig) and not isinstance(cfg, FitnetRunConfig)
        check_dot(cfg.optim, cfg.trainer, distill, world_size())


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
    count = check_teacher_count(cfg.teacher, cfg.resume, isinstance(cfg, FitnetRunConfig))
    check_teachers_taken(cfg.loss.name, method(cfg.loss.name).one_teacher, count)


def check_fitnet(cfg: FitnetRunConfig) -> None:
    choice(cfg.stage2.mode, STAGE2_MODES, "stage2")
    check_stage2_loss(cfg.loss)
    check_fitnet_values(cfg.fitnet)

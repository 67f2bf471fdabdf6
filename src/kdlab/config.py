"""Typed config schemas (registered in Hydra's ConfigStore) and the checks Hydra cannot do.

The schemas make Hydra reject unknown keys and wrong types at composition time; `validate`
adds the range and name checks, so every bad input fails before any data is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from kdlab.distributed import world_size
from kdlab.errors import KdlabError

PRECISIONS = ("32", "bf16", "fp16", "auto")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "multistep", "onecycle", "constant")
LOSSES = ("ce", "kd")
STAGE2_MODES = ("frozen", "finetune")
REGRESSORS = ("conv1x1", "conv3x3", "none")
PROGRESS = ("auto", "on", "off")


@dataclass
class DataConfig:
    name: str = "cifar10"
    root: str = "data"
    download: bool = True
    verify_md5: bool = True
    train_size: int | None = None
    test_size: int | None = None
    val_split: float = 0.1
    split_seed: int | None = 0  # fixes subsets and the val split across runs; null = `seed`
    augment: bool = True
    image_size: int = 32
    num_workers: int = 2
    in_memory_max_mb: int = 4096
    mean: list[float] | None = None
    std: list[float] | None = None


@dataclass
class TrainerConfig:
    epochs: int = 30
    batch_size: int = 128
    eval_batch_size: int = 512
    device: str = "auto"  # auto = cuda > mps > cpu
    # auto = bf16 autocast where the hardware computes bf16 natively (CUDA from Ampere, CPUs
    # with AVX512-BF16/AMX; accuracy unchanged on the synthetic set), else 32. Emulated bf16
    # is ~10x slower than fp32 (AVX2 CPU), so auto never picks it there.
    precision: str = "auto"  # auto | 32 | bf16 | fp16 (autocast)
    # NHWC activations: +22% (ResNet teacher) / +24% (CNN student) per training step on a
    # 2-core AVX2 CPU (scripts/bench_means.py), but opt-in: there, cnn_student's gradients
    # deviate 3.4e-3 from fp64 (4e-6 contiguous) and 4 of 4 paired quick-preset runs ended
    # 0.5-1.8 test points lower. Not yet measured on a GPU.
    channels_last: bool = False
    compile: bool = False
    deterministic: bool = False
    label_smoothing: float = 0.0
    grad_clip: float | None = None  # max global grad norm; null = off
    log_every: int = 50  # steps between TensorBoard step scalars (one host sync each)
    progress: str = "auto"  # tqdm bars: auto = only on a terminal and not in a multirun
    skip_nonfinite: bool = False  # skip (and count) NaN/Inf-loss batches instead of stopping
    num_threads: int | None = None  # CPU threads for torch; null = torch's default


@dataclass
class OptimConfig:
    name: str = "sgd"
    lr: float = 0.05  # peak learning rate
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class SchedConfig:
    name: str = "cosine"
    warmup_epochs: float = 0.0  # linear warmup from 0, counted in (fractional) epochs
    min_lr_ratio: float = 0.0  # cosine/onecycle floor as a fraction of the peak lr
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])  # fractions of training
    gamma: float = 0.1  # multistep decay factor
    pct_start: float = 0.25  # onecycle: fraction of training spent rising


@dataclass
class RunConfig:
    command: str = MISSING
    seed: int = 0
    resume: bool = False
    debug: bool = False
    model: Any = MISSING
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: SchedConfig = field(default_factory=SchedConfig)


@dataclass
class LossConfig:
    name: str = "kd"  # kd | ce


@dataclass
class TeacherConfig:
    ckpt: str | None = None  # a checkpoint file or run dir; null = newest finished teacher run
    model: str = "resnet_teacher"  # with ckpt=null: which `kdlab train` runs count as teachers
    search_dir: str = "outputs"  # with ckpt=null: where to look for them
    # Exact logit cache: the teacher's logits per (training image, crop/flip view), stored
    # beside its checkpoint (<ckpt>.logits/) and reused by later runs on the same images.
    cache: bool = True
    cache_dir: str | None = None  # null = beside the teacher checkpoint


@dataclass
class DistillConfig(RunConfig):
    loss: LossConfig = field(default_factory=LossConfig)
    T: float = 4.0
    alpha: float = 0.1  # weight of the hard (label) term
    teacher: TeacherConfig = field(default_factory=TeacherConfig)


@dataclass
class Stage2Config:
    mode: str = "finetune"  # frozen | finetune


@dataclass
class FitnetConfig:
    stage1_epochs: int | None = None  # null = ceil(trainer.epochs / 8)
    hint_layer: str | None = None  # teacher feature point; null = the teacher's default
    guided_layer: str | None = None  # student feature point; null = the student's default
    # The hint loss sums over the C*H*W features of each image (FitNets' formula), so it is
    # ~1000x larger than a cross-entropy and needs a much smaller lr than stage two. Larger
    # rates grow the guided layers' weight norms (10-15x at 5e-4), which under BatchNorm all
    # but freezes them in stage two. Measured, quick preset, fitnet_student guided by
    # resnet_teacher's layer2 (64x16x16), stage2=finetune test acc: 5e-4 20.4%, 5e-5 32.9%,
    # 5e-6 54.6% (baseline 49.3%).
    stage1_lr: float = 5e-6
    regressor: str = "conv1x1"  # conv1x1 | conv3x3 | none (guided and hint shapes must match)
    finetune_lr_scale: float = 1.0  # stage2=finetune: lr factor for the pre-trained part


@dataclass
class FitnetRunConfig(DistillConfig):
    stage2: Stage2Config = field(default_factory=Stage2Config)
    fitnet: FitnetConfig = field(default_factory=FitnetConfig)


def register_schemas() -> None:
    """Make the schemas available to the primary configs' defaults lists."""
    store = ConfigStore.instance()
    store.store(name="kdlab_run", node=RunConfig)
    store.store(name="kdlab_distill", node=DistillConfig)
    store.store(name="kdlab_fitnet", node=FitnetRunConfig)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise KdlabError(message)


def _choice(value: str, valid: tuple[str, ...], key: str) -> None:
    _require(
        value in valid, f"unknown {key} '{value}': choose one of {', '.join(valid)} ({key}=NAME)"
    )


def _positive(value: float, key: str) -> None:
    _require(value > 0, f"{key} must be positive, got {value} (set {key}=N with N > 0)")


def validate(cfg: DictConfig) -> None:
    """Check ranges and names that the typed schema cannot express, and the batch split."""
    from kdlab.models import build_model, model_names

    t = cfg.trainer
    _positive(t.epochs, "trainer.epochs")
    _positive(t.batch_size, "trainer.batch_size")
    ranks = world_size()
    _require(
        t.batch_size % ranks == 0,
        f"trainer.batch_size={t.batch_size} (the global batch) is not divisible by the "
        f"{ranks} torchrun processes: pick a multiple of {ranks}",
    )
    _positive(t.eval_batch_size, "trainer.eval_batch_size")
    _positive(t.log_every, "trainer.log_every")
    _choice(str(t.precision), PRECISIONS, "trainer.precision")
    _choice(t.progress, PROGRESS, "trainer.progress")
    _require(
        0.0 <= t.label_smoothing < 1.0,
        f"trainer.label_smoothing must be in [0, 1), got {t.label_smoothing}",
    )
    if t.grad_clip is not None:
        _positive(t.grad_clip, "trainer.grad_clip")
    _require(
        t.device == "auto" or t.device.split(":")[0] in ("cpu", "cuda", "mps"),
        f"unknown trainer.device '{t.device}': use auto, cpu, cuda, cuda:N or mps",
    )
    _choice(cfg.optim.name, OPTIMIZERS, "optim")
    _positive(cfg.optim.lr, "optim.lr")
    _require(cfg.optim.weight_decay >= 0, "optim.weight_decay must be >= 0")
    _choice(cfg.sched.name, SCHEDULES, "sched")
    _require(cfg.sched.warmup_epochs >= 0, "sched.warmup_epochs must be >= 0")
    _require(
        cfg.sched.warmup_epochs < t.epochs or cfg.sched.warmup_epochs == 0,
        f"sched.warmup_epochs ({cfg.sched.warmup_epochs}) must be shorter than "
        f"trainer.epochs ({t.epochs})",
    )
    from kdlab.data.settings import parse_settings

    parse_settings(cfg.data)
    if "T" in cfg:
        _validate_distillation(cfg)
    arch = cfg.model.get("arch") if isinstance(cfg.model, DictConfig) else None
    _require(arch is not None, "model has no 'arch': pick one with model=NAME (see kdlab models)")
    _choice(arch, tuple(model_names()), "model")
    options = {k: v for k, v in cfg.model.items() if k != "arch"}
    with torch.device("meta"):  # checks the model's options at no memory or init cost
        build_model(arch, 10, **options)


def _validate_distillation(cfg: DictConfig) -> None:
    _choice(cfg.loss.name, LOSSES, "loss")
    _require(cfg.T > 0, f"T must be positive, got {cfg.T} (e.g. T=4)")
    _require(
        0.0 <= cfg.alpha <= 1.0,
        f"alpha must be in [0, 1] (it weighs the hard-label term), got {cfg.alpha}",
    )
    if "fitnet" in cfg:
        f = cfg.fitnet
        _choice(cfg.stage2.mode, STAGE2_MODES, "stage2")
        _choice(f.regressor, REGRESSORS, "fitnet.regressor")
        _positive(f.stage1_lr, "fitnet.stage1_lr")
        if f.stage1_epochs is not None:
            _positive(f.stage1_epochs, "fitnet.stage1_epochs")
        _require(f.finetune_lr_scale >= 0, "fitnet.finetune_lr_scale must be >= 0")

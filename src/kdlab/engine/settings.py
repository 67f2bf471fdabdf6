"""The engine's own settings, kept apart from the trainer and the optimiser so the pre-flight
(and the CLI's torch-free screen) can read them without torch: `trainer.*` (how the loop
runs: epochs, batch, device, precision, logging), `optim.*` and `sched.*`, whose
`OPTIMIZERS` and `SCHEDULES` are the options of the `optim=` and `sched=` config groups
(registered by kdlab.runs.config)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass
class TrainerConfig:
    epochs: int = 30
    batch_size: int = 128  # the global batch (split over torchrun processes)
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
    """`optim=sgd|adamw|dot`; no weight decay on biases and norm weights."""

    name: str = "sgd"
    lr: float = 0.05  # peak learning rate
    momentum: float = 0.9  # sgd
    nesterov: bool = True  # sgd
    weight_decay: float = 5e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adamw
    delta: float = 0.075  # dot: momentum +- delta for the distillation / task gradients


@dataclass
class SchedConfig:
    """`sched=cosine|multistep|onecycle|constant`, stepped per batch."""

    name: str = "cosine"
    warmup_epochs: float = 0.0  # linear warmup from 0, counted in (fractional) epochs
    min_lr_ratio: float = 0.0  # cosine/onecycle floor as a fraction of the peak lr
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])  # multistep: fractions
    gamma: float = 0.1  # multistep: decay factor at each milestone
    pct_start: float = 0.25  # onecycle: fraction of training spent rising linearly


OPTIMIZERS: dict[str, OptimConfig] = {
    "sgd": OptimConfig(),
    "adamw": OptimConfig(name="adamw", lr=2e-3, weight_decay=0.05),
    # mdistiller configs/cifar100/dot/*.yaml (@a08d46f): SGD momentum 0.9, DOT.DELTA 0.075.
    "dot": OptimConfig(name="dot", nesterov=False),
}
SCHEDULES: dict[str, SchedConfig] = {
    name: SchedConfig(name=name) for name in ("cosine", "multistep", "onecycle", "constant")
}


def announced_world_size() -> int:
    """The processes torchrun announced (WORLD_SIZE; 1 alone): known without torch, before
    the process group is joined (kdlab.engine.distributed.world_size once it is)."""
    return int(os.environ.get("WORLD_SIZE", "1"))

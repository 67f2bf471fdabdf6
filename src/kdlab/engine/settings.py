"""`trainer.*`: how the loop runs (epochs, batch, device, precision, logging), the engine's
own settings, kept apart from the trainer so the pre-flight can read them without it."""

from __future__ import annotations

from dataclasses import dataclass


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

"""How a run computes: device, precision, seeds, determinism and RNG state."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch
from omegaconf import DictConfig

from kdlab.engine.distributed import rank_device
from kdlab.errors import KdlabError

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def pick_device(name: str) -> torch.device:
    """`auto` prefers cuda, then mps, then cpu; an unavailable device is a user error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise KdlabError(
            f"trainer.device={name} but no CUDA GPU is visible: use trainer.device=cpu"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise KdlabError(f"trainer.device={name} but MPS is not available: use trainer.device=cpu")
    return device


def seed_everything(seed: int) -> None:
    """Seed every generator a run touches (model init, dropout, Python, NumPy)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def native_bf16(device: torch.device) -> bool:
    """Whether the device computes bf16 in hardware: CUDA GPUs from Ampere on, CPUs with
    AVX512-BF16 or AMX. Elsewhere bf16 autocast is emulated and slower than fp32 (about 10x
    measured on an AVX2-only CPU), so `auto` must not pick it there."""
    if device.type == "cuda":  # this GPU's, not the current one's (is_bf16_supported)
        return torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto` is bf16 where the hardware has it natively (accuracy checked unchanged on the
    synthetic set), else 32; the other settings are taken as given."""
    if str(precision) != "auto":
        return str(precision)
    return "bf16" if native_bf16(device) else "32"


def setup_runtime(trainer: DictConfig, seed: int) -> torch.device:
    """Apply seeds, thread count and determinism; return this rank's training device."""
    device = rank_device(pick_device(trainer.device))
    if trainer.num_threads:
        torch.set_num_threads(trainer.num_threads)
    if trainer.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # Only where the flags change: the call imports torch._inductor (1.9 s), which a run that
    # stops before its optimiser (a data set's error) would not otherwise pay. On, it warns
    # rather than raises (an op without a deterministic kernel), even where the caller's
    # process had turned it on strictly.
    strict = not torch.is_deterministic_algorithms_warn_only_enabled()
    if torch.are_deterministic_algorithms_enabled() != trainer.deterministic or (
        trainer.deterministic and strict
    ):
        torch.use_deterministic_algorithms(trainer.deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = device.type == "cuda" and not trainer.deterministic
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = not trainer.deterministic
        torch.backends.cudnn.allow_tf32 = not trainer.deterministic
    seed_everything(seed)
    return device


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[None]:
    """Mixed precision for the forward pass; a no-op for precision 32."""
    dtype = AUTOCAST_DTYPES.get(str(precision))
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def eval_mode(*modules: torch.nn.Module) -> Iterator[None]:
    """Put modules in eval mode for the block and restore their previous modes after."""
    modes = [(m, m.training) for module in modules for m in module.modules()]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.train(training)


def rng_state() -> dict:
    """The generators' states, in a form `torch.load(weights_only=True)` accepts.

    No CUDA generator: kdlab draws from none (models are initialised on the host, the data
    schedule and augmentation use seeded CPU generators, no model has dropout), and a
    per-GPU list would tie a checkpoint to the number of GPUs it was saved on."""
    return {"torch": torch.get_rng_state(), "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    """Restore `rng_state`'s generators (a 'cuda' entry of older checkpoints is ignored)."""
    torch.set_rng_state(state["torch"])
    random.setstate(
        tuple(state["python"]) if isinstance(state["python"], list) else state["python"]
    )

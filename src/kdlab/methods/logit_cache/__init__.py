"""The exact teacher-logit cache: a KD step at the cost of a student step, across a sweep.

CIFAR's augmentation (pad-4 crop and flip) gives each training image only 162 distinct
views, so the teacher's logits for a view can be computed once, stored beside the teacher
checkpoint and reused by every later run that trains on the same images with the same
teacher and the same numerics. It applies to logit distillation (`kdlab distill loss=kd`,
FitNets stage two); FitNets stage one needs features and always runs the teacher.

What is guaranteed: every stored row was computed by the teacher on a whole training
batch, built by the training step's own code, under the step's autocast, so the logits a
step gets are bit-identical to what the online teacher computes in that step, wherever
the teacher's output for an image depends only on that image and on the batch's size (not
on the other images in it). The store is keyed on the batch size (on a CPU a lone image
takes other kernels than a batch: 6e-8 apart) and on everything else the numbers depend
on: teacher and image bytes, normalisation, views, precision and output dtype, memory
format, device model / CPU ISA, torch version, deterministic algorithms, fp32 matmul
precision and, on CUDA, cuDNN's TF32 and autotuning flags. Not covered: cuDNN autotuning
(`trainer.deterministic=false` on a GPU) may pick another convolution algorithm in another
process, so there the stored logits match the online teacher's to rounding, not bitwise;
and with `trainer.compile=true` the online teacher runs compiled inside the step while the
cache holds its eager outputs (equal to rounding). `tests/test_logit_cache.py` checks the
bitwise claim on the CPU: cached vs online logits of every step, and a cached distill
run's final weights vs an online one's, over several seeds and epoch counts.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import torch

from kdlab.data.batch_loader import BatchLoader
from kdlab.data.device_loader import DeviceLoader
from kdlab.engine.execution import autocast
from kdlab.methods.logit_cache.loader import CachedLogitLoader
from kdlab.methods.logit_cache.store import FORMAT, LogitStore, dtype_name
from kdlab.methods.teacher import FrozenTeacher

log = logging.getLogger("kdlab")

__all__ = ["CachedLogitLoader", "LogitStore", "cache_refusal", "cache_root", "cached_logit_loader"]


def cache_refusal(train: BatchLoader) -> str | None:
    """Why the cache cannot serve these training batches exactly, or None where it can."""
    if not isinstance(train, DeviceLoader):
        return (
            "the logit cache needs the training images in memory; raise data.in_memory_max_mb "
            "if they fit"
        )
    if train.strong is not None:
        return (
            "data.views=weak_strong draws its strong views (RandAugment) from continuous "
            "parameters, so they cannot be stored exactly; teacher.cache is off for it"
        )
    if train.epoch_plan().num_views is None:
        return (
            "data.augment=imagenet draws random-resized crops from continuous parameters, so no "
            "finite set of views can be stored exactly; teacher.cache is off for it"
        )
    return None


def cache_root(teacher_path: Path, cache_dir: str | None) -> Path:
    """Where the stores live: teacher.cache_dir, or <ckpt>.logits/ beside the teacher's
    checkpoint (several teachers: the first one's; each store is named by all of them)."""
    return Path(cache_dir) if cache_dir else teacher_path.with_name(f"{teacher_path.stem}.logits")


def cached_logit_loader(
    train: BatchLoader,
    teacher: FrozenTeacher,
    teacher_key: dict[str, Any],
    root: Path,
    *,
    num_classes: int,
    precision: str,
) -> CachedLogitLoader | None:
    """The training loader with the teacher's logits from the store under `root`; None, with
    the reason logged, where the cache cannot serve. `teacher_key` names the teacher in the
    store's metadata: {"teacher_sha256": SHA} for one, and for an ensemble every member's
    sha256 in order with the weights (kdlab.runs.teacher.Teachers.cache_key)."""
    refusal = cache_refusal(train)
    if refusal is not None or not isinstance(train, DeviceLoader):
        log.info("teacher logits: computed every step (%s)", refusal)
        return None
    try:
        dtype = logits_dtype(teacher, train, precision)
        meta = store_meta(teacher_key, train, num_classes, precision, dtype)
        rows = train.images.shape[0] * meta["views"]
        store = LogitStore.open(root, meta, rows, num_classes, dtype)
    except (OSError, ValueError, TypeError) as error:
        log.warning("teacher logits: computed every step, the cache is unusable (%s)", error)
        return None
    log.info(
        "teacher logits: cached in %s (%d views per image, %.1f%% stored%s)",
        store.directory,
        meta["views"],
        100.0 * float(store.filled.mean()),
        "" if store.writable else "; read-only storage: views it lacks are computed each time",
    )
    return CachedLogitLoader(train, store, teacher, precision)


def logits_dtype(teacher: FrozenTeacher, train: DeviceLoader, precision: str) -> torch.dtype:
    """The dtype the teacher's logits have in this precision (one image's forward pass)."""
    with autocast(train.device, precision):
        return teacher.logits(train.normalize(train.images[:1])).dtype


def store_meta(
    teacher_key: dict[str, Any],
    train: DeviceLoader,
    num_classes: int,
    precision: str,
    dtype: torch.dtype,
) -> dict[str, Any]:
    """Everything the stored logits depend on; its hash names the store."""
    plan = train.epoch_plan()
    return {
        **numerics(train.device),
        "format": FORMAT,
        **teacher_key,
        "images_sha256": tensor_sha256(train.images),
        "images": list(train.images.shape),
        "normalize_scale": train.normalize.scale.flatten().tolist(),
        "normalize_shift": train.normalize.shift.flatten().tolist(),
        "channels_last": train.normalize.memory_format == torch.channels_last,
        "pad": plan.pad if plan.views is not None else None,
        "views": plan.num_views,
        "batch_size": plan.indices[0].numel(),  # this rank's: what the teacher runs on
        "num_classes": num_classes,
        "precision": precision,
        "dtype": dtype_name(dtype),
        "device": device_kind(train.device),
        "torch": torch.__version__,
    }


def numerics(device: torch.device) -> dict[str, Any]:
    """The process-wide settings that change the teacher's output bits."""
    flags: dict[str, Any] = {
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "matmul_precision": torch.get_float32_matmul_precision(),
    }
    if device.type == "cuda":
        flags["cudnn_tf32"] = torch.backends.cudnn.allow_tf32
        flags["cudnn_benchmark"] = torch.backends.cudnn.benchmark
    return flags


def device_kind(device: torch.device) -> str:
    """Kernels (and so the last bits of a result) differ between GPU models and CPU ISAs."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    if device.type == "cpu":
        return f"cpu:{torch.backends.cpu.get_cpu_capability()}"
    return device.type


def tensor_sha256(tensor: torch.Tensor) -> str:
    array = tensor.detach().cpu().contiguous().numpy()
    return hashlib.sha256(memoryview(array).cast("B")).hexdigest()

"""The `data` config node (schema: kdlab.config.DataConfig), checked before anything loads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from omegaconf import DictConfig, OmegaConf

from kdlab.config import DataConfig
from kdlab.errors import KdlabError

NAMES = ("cifar10", "cifar100", "imagefolder", "synthetic")
FIXED_SIZE = 32  # cifar and synthetic images are 32x32


def parse_settings(cfg: Mapping) -> DataConfig:
    """Settings from a DictConfig or dict; missing keys take the schema's defaults."""
    raw: dict[str, Any] = dict(
        OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    )
    known = [f.name for f in fields(DataConfig)]
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise KdlabError(
            f"unknown data setting(s) {', '.join(unknown)}: valid ones are {', '.join(known)}"
        )
    for key in ("mean", "std"):
        if raw.get(key) is not None:
            raw[key] = tuple(float(v) for v in raw[key])
    settings = DataConfig(**raw)
    check_settings(settings)
    return settings


def check_settings(data: DataConfig) -> None:
    """Range and consistency checks of the `data` node (the schema checks the types)."""
    if data.name not in NAMES:
        raise KdlabError(
            f"unknown data set '{data.name}': choose one of {', '.join(NAMES)} (data=NAME)"
        )
    if not 0.0 <= data.val_split < 1.0:
        raise KdlabError(f"data.val_split must be in [0, 1), got {data.val_split}")
    for key in ("train_size", "test_size"):
        value = getattr(data, key)
        if value is not None and value <= 0:
            raise KdlabError(f"data.{key} must be positive (or null for all), got {value}")
    if data.image_size <= 0:
        raise KdlabError(f"data.image_size must be positive, got {data.image_size}")
    for key in ("num_workers", "in_memory_max_mb"):
        if getattr(data, key) < 0:
            raise KdlabError(f"data.{key} must be >= 0, got {getattr(data, key)}")
    if data.name != "imagefolder" and data.image_size != FIXED_SIZE:
        raise KdlabError(
            f"{data.name} images are {FIXED_SIZE}x{FIXED_SIZE}: drop data.image_size "
            f"(got {data.image_size}); only imagefolder resizes"
        )
    if data.name == "imagefolder" and data.root in ("", "???"):
        raise KdlabError("imagefolder needs data.root=DIR (with train/ and test/ or val/)")
    if (data.mean is None) != (data.std is None):
        raise KdlabError("set both data.mean and data.std (3 values each) or neither")
    if data.mean is not None and data.std is not None:
        if len(data.mean) != 3 or len(data.std) != 3:
            raise KdlabError("data.mean and data.std need 3 values each (R, G, B)")
        if min(data.std) <= 0:
            raise KdlabError(f"data.std must be positive, got {list(data.std)}")

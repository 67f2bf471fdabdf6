"""The `data` config node, checked once up front so bad input fails before anything loads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from omegaconf import DictConfig, OmegaConf

from kdlab.errors import KdlabError

NAMES = ("cifar10", "cifar100", "imagefolder", "synthetic")
FIXED_SIZE = 32  # cifar and synthetic images are 32x32


@dataclass(frozen=True)
class DataSettings:
    name: str = "cifar10"
    root: str = "data"
    download: bool = True
    verify_md5: bool = True
    train_size: int | None = None
    test_size: int | None = None
    val_split: float = 0.1
    augment: bool = True
    image_size: int = FIXED_SIZE
    num_workers: int = 2
    in_memory_max_mb: int = 4096
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @classmethod
    def parse(cls, cfg: Mapping) -> DataSettings:
        """Settings from a DictConfig or dict; missing keys take the defaults above."""
        raw: dict[str, Any] = dict(
            OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
        )
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise KdlabError(
                f"unknown data setting(s) {', '.join(unknown)}: valid ones are {', '.join(known)}"
            )
        for key in ("mean", "std"):
            if raw.get(key) is not None:
                raw[key] = tuple(float(v) for v in raw[key])
        settings = cls(**raw)
        settings._check()
        return settings

    def _check(self) -> None:
        if self.name not in NAMES:
            raise KdlabError(
                f"unknown data set '{self.name}': choose one of {', '.join(NAMES)} (data=NAME)"
            )
        if not 0.0 <= self.val_split < 1.0:
            raise KdlabError(f"data.val_split must be in [0, 1), got {self.val_split}")
        for key in ("train_size", "test_size"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise KdlabError(f"data.{key} must be positive (or null for all), got {value}")
        if self.image_size <= 0:
            raise KdlabError(f"data.image_size must be positive, got {self.image_size}")
        for key in ("num_workers", "in_memory_max_mb"):
            if getattr(self, key) < 0:
                raise KdlabError(f"data.{key} must be >= 0, got {getattr(self, key)}")
        if self.name != "imagefolder" and self.image_size != FIXED_SIZE:
            raise KdlabError(
                f"{self.name} images are {FIXED_SIZE}x{FIXED_SIZE}: drop data.image_size "
                f"(got {self.image_size}); only imagefolder resizes"
            )
        if self.name == "imagefolder" and self.root in ("", "???"):
            raise KdlabError("imagefolder needs data.root=DIR (with train/ and test/ or val/)")
        if (self.mean is None) != (self.std is None):
            raise KdlabError("set both data.mean and data.std (3 values each) or neither")
        if self.mean is not None and self.std is not None:
            if len(self.mean) != 3 or len(self.std) != 3:
                raise KdlabError("data.mean and data.std need 3 values each (R, G, B)")
            if min(self.std) <= 0:
                raise KdlabError(f"data.std must be positive, got {list(self.std)}")

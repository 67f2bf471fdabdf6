"""What each data set module hands to `build_data`: its two splits, class names and stats."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

import torch

from kdlab.data.splits import Labelled


@dataclass(frozen=True)
class ImageSet:
    """A split decoded into host memory: uint8 images (N,C,S,S) and int64 labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def subset(self, index: torch.Tensor) -> ImageSet:
        return ImageSet(self.images[index], self.labels[index])


SplitT = TypeVar("SplitT", bound=Labelled)


@dataclass(frozen=True)
class Source(Generic[SplitT]):
    """A data set's train and test splits and its class names."""

    train: SplitT
    test: SplitT
    class_names: list[str]

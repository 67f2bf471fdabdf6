"""A finished run's selected model with the preprocessing its inputs need.

The model a run selected (its best.pt, as `kdlab.load_run` picks it) is only usable with the
inputs it trained on: images of the run's size and channels, normalised with the run's
mean and std. Both travel together here, for exporting, predicting and timing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdlab.data.build import run_mean_std
from kdlab.data.choices import augment_mode, run_normalization, stored_sides
from kdlab.data.imagefolder import decode_image
from kdlab.data.normalize import Normalizer
from kdlab.data.registry import data_settings, dataset_spec, image_size_of
from kdlab.engine.checkpoint import Checkpoint
from kdlab.models import model_label
from kdlab.paths import selected_checkpoint
from kdlab.version import __version__

INPUT_NAME, OUTPUT_NAME = "input", "logits"  # the exported graphs' tensor names


@dataclass(frozen=True)
class Preprocessing:
    """What an image goes through before the model, as the run's evaluation did: decoded to
    `channels` 8-bit channels, shorter side resized to `resize` and the centre `image_size`
    square cropped (resize > image_size under data.augment=imagenet), then
    (pixel / 255 - mean) / std per channel."""

    image_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: int

    def normalizer(self, device: torch.device) -> Normalizer:
        return Normalizer(self.mean, self.std, device)

    def decode(self, paths: Sequence[Path]) -> torch.Tensor:
        """The images as one uint8 (N, C, S, S) batch; an unreadable file is a KdlabError
        naming it."""
        size, channels, resize = self.image_size, self.channels, self.resize
        return torch.stack([decode_image(str(p), size, channels, resize) for p in paths])

    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)


@dataclass(frozen=True)
class SelectedModel:
    """A run's selected checkpoint, its model (eval mode, CPU) and its preprocessing."""

    checkpoint: Path
    state: Checkpoint
    model: nn.Module
    preprocessing: Preprocessing

    @property
    def class_names(self) -> list[str]:
        return list(self.state.class_names)

    def metadata(self) -> dict[str, Any]:
        """Everything a user of an exported file needs to feed it and read its output."""
        s = self.state
        p = self.preprocessing
        return {
            "model": model_label(s.config["model"]),
            "model_config": dict(s.config["model"]),
            "num_classes": s.num_classes,
            "class_names": self.class_names,
            "data": s.data,
            "image_size": p.image_size,
            "resize": p.resize,
            "channels": p.channels,
            "mean": list(p.mean),
            "std": list(p.std),
            "input": f"{INPUT_NAME}: float32 (batch, {p.channels}, {p.image_size}, "
            f"{p.image_size}) = (pixel / 255 - mean) / std per channel, the image's shorter "
            f"side resized to {p.resize} and the centre {p.image_size} square cropped"
            + ("; one channel = luminance" if p.channels == 1 else "; RGB"),
            "output": f"{OUTPUT_NAME}: float32 (batch, {s.num_classes}), class_names[i] for "
            "output i; softmax gives probabilities",
            "epoch": s.epoch,
            "checkpoint": str(self.checkpoint),
            "kdlab_version": __version__,
        }


def run_preprocessing(state: Checkpoint) -> Preprocessing:
    """The checkpoint's recorded preprocessing; for files that predate the record, the same
    figures recomputed from its config (the data set is read if its statistics were computed)."""
    settings = data_settings(state.config["data"])
    size = state.image_size or image_size_of(settings)
    (resize, _) = stored_sides(augment_mode(settings, dataset_spec(settings.name)), size)[1]
    if state.mean and state.std:
        mean, std = tuple(state.mean), tuple(state.std)
    else:
        imagenet = run_normalization(state.config) == "imagenet"
        mean, std = run_mean_std(settings, int(state.config.get("seed", 0)), imagenet)
    return Preprocessing(size, state.in_channels, mean, std, resize)


def load_selected(path: str | Path, allow_modified: bool = False) -> SelectedModel:
    """The selected model of a run dir or .pt file, in eval mode on the CPU; a file that
    differs from its record is refused unless `allow_modified` (--allow-modified)."""
    file = selected_checkpoint(path)
    state = Checkpoint.read(file, allow_modified=allow_modified)
    return SelectedModel(file, state, state.build_model(file).eval(), run_preprocessing(state))

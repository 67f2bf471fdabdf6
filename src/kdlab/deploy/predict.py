"""Top-k classes of image files by a run's selected model, preprocessed as in its training."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from kdlab.data.imagefolder import IMAGE_SUFFIXES
from kdlab.deploy.selected import SelectedModel
from kdlab.errors import KdlabError

BATCH = 64  # images decoded and classified at once


@dataclass(frozen=True)
class Prediction:
    image: Path
    top: list[tuple[str, float]]  # (class name, probability), most probable first


def image_files(items: Sequence[str | Path]) -> list[Path]:
    """The files given and the images in the folders given (recursively, by suffix, sorted)."""
    files: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not found:
                raise KdlabError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            files += found
        else:
            raise KdlabError(f"{path} does not exist: give image files or folders of images")
    return files


def predict(
    selected: SelectedModel, files: Sequence[Path], top_k: int, device: torch.device
) -> list[Prediction]:
    """The `top_k` most probable classes of every file (every file is read before anything is
    returned: an unreadable one is a KdlabError naming it)."""
    if top_k < 1:
        raise KdlabError(f"--top-k must be at least 1, got {top_k}")
    names = selected.class_names
    k = min(top_k, len(names))
    model = selected.model.to(device)
    normalize = selected.preprocessing.normalizer(device)
    predictions = []
    for start in range(0, len(files), BATCH):
        chunk = files[start : start + BATCH]
        pixels = selected.preprocessing.decode(chunk).to(device)
        with torch.inference_mode():
            probs, index = model(normalize(pixels)).float().softmax(dim=1).topk(k, dim=1)
        for file, p, i in zip(chunk, probs.tolist(), index.tolist(), strict=True):
            predictions.append(Prediction(file, [(names[c], q) for c, q in zip(i, p, strict=True)]))
    return predictions

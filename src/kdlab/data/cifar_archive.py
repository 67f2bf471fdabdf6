"""Tiny CIFAR-10/100 copies in CIFAR's own archive format: the data sets' `make_tiny`, so
loading is tested (and tried) without a download.

The batch files are pickled dicts as in the official Python release (loaded by torchvision
with encoding="latin1"): "data" is a uint8 N x 3072 array (R, G, B planes of 32x32), labels
are in "labels" (CIFAR-10) or "fine_labels"/"coarse_labels" (CIFAR-100).
"""

from __future__ import annotations

import io
import pickle
import tarfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Written:
    """What the archive holds: images (N,3,32,32) uint8 and labels, per split, and names."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: list[str]


def _images(n: int, rng: np.random.Generator) -> np.ndarray:
    images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(n)  # pixel (R, 0, 0) names the image, to find it again
    return images


def _add(tar: tarfile.TarFile, name: str, content: dict) -> None:
    data = pickle.dumps(content, protocol=2)
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _rows(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), 3072)


def write_cifar10(root: Path, per_batch: int = 4, test: int = 10, seed: int = 0) -> Written:
    """cifar-10-python.tar.gz: data_batch_1..5 of `per_batch` images, test_batch, batches.meta."""
    rng = np.random.default_rng(seed)
    names = [f"thing{c}" for c in range(10)]
    train_images = _images(5 * per_batch, rng)
    train_labels = np.arange(5 * per_batch) % 10
    test_images = _images(test, rng)
    test_labels = (np.arange(test) * 3) % 10
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
        for b in range(5):
            part = slice(b * per_batch, (b + 1) * per_batch)
            batch = {"data": _rows(train_images[part]), "labels": train_labels[part].tolist()}
            _add(tar, f"cifar-10-batches-py/data_batch_{b + 1}", batch)
        _add(
            tar,
            "cifar-10-batches-py/test_batch",
            {"data": _rows(test_images), "labels": test_labels.tolist()},
        )
        _add(tar, "cifar-10-batches-py/batches.meta", {"label_names": names})
    return Written(train_images, train_labels, test_images, test_labels, names)


def write_cifar100(root: Path, train: int = 200, test: int = 100, seed: int = 1) -> Written:
    """cifar-100-python.tar.gz: train, test and meta with fine (and coarse) labels."""
    rng = np.random.default_rng(seed)
    names = [f"fine{c:02d}" for c in range(100)]
    train_images, test_images = _images(train, rng), _images(test, rng)
    train_labels, test_labels = np.arange(train) % 100, (np.arange(test) * 7) % 100
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(root / "cifar-100-python.tar.gz", "w:gz") as tar:
        for split, images, labels in (
            ("train", train_images, train_labels),
            ("test", test_images, test_labels),
        ):
            _add(
                tar,
                f"cifar-100-python/{split}",
                {
                    "data": _rows(images),
                    "fine_labels": labels.tolist(),
                    "coarse_labels": (labels // 5).tolist(),
                },
            )
        _add(
            tar,
            "cifar-100-python/meta",
            {
                "fine_label_names": names,
                "coarse_label_names": [f"coarse{c:02d}" for c in range(20)],
            },
        )
    return Written(train_images, train_labels, test_images, test_labels, names)


# Tiny copies: 5 train images a class, enough for the default val split to hold one out of each.
TINY_WRITERS = {
    "cifar10": partial(write_cifar10, per_batch=10, test=20),
    "cifar100": partial(write_cifar100, train=500, test=100),
}


def write_tiny(name: str, root: Path) -> dict[str, Any]:
    """A tiny archive of `name` (cifar10, cifar100) in `root`, and the `data.*` settings that
    load it."""
    TINY_WRITERS[name](root)
    return {"root": str(root), "download": False, "verify_md5": False}

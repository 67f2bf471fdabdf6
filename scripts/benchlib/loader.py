"""bench.py --only loader: images/s of kdlab's streamed image-folder path at 224 px (JPEGs
decoded in the workers, or by the training process on its device: data.decode=device),
against its in-memory path and a plain torchvision ImageFolder + PIL + DataLoader loop with the same
augmentation (RandomResizedCrop + flip, ImageNet normalisation), on a generated folder of
JPEGs; no model, the batches only, timed in interleaved rounds."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from benchlib.core import folder_data, streamed_workers
from benchlib.timing import Work, measure_together, note

SIZE, SIDE, CLASSES, TEST_IMAGES = 224, 256, 10, 20
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def write_jpegs(root: Path, count: int) -> Path:
    """`count` SIDE x SIDE JPEGs (quality 90) in CLASSES classes under train/, a few in test/:
    smooth colour fields with noise, so they compress like photographs rather than noise."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, SIDE)
    for split, n in (("train", count), ("test", TEST_IMAGES)):
        for i in range(n):
            folder = root / split / f"class{i % CLASSES}"
            folder.mkdir(parents=True, exist_ok=True)
            field = ramp[None, :, None] * rng.uniform(0, 255, 3) + ramp[:, None, None] * 60
            pixels = (field + rng.normal(0, 12, (SIDE, SIDE, 3))).clip(0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=90)
    return root


def reference_loader(root: Path, batch_size: int, workers: int, device: torch.device) -> DataLoader:
    """What most ImageNet scripts run: ImageFolder, PIL decode, torchvision transforms."""
    transform = transforms.Compose(
        [
            transforms.RandomResizedCrop(SIZE),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    return DataLoader(
        datasets.ImageFolder(str(root / "train"), transform),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,  # as kdlab's: no worker start-up inside an epoch
    )


def epoch(name: str, loader, device: torch.device, images: int) -> Work:
    """One pass over `loader`, each batch on `device` (kdlab's loaders put it there)."""

    def run() -> None:
        for x, _ in loader:
            x.to(device, non_blocking=True)

    return Work(name, run, images)


def loader_rows(args: argparse.Namespace, device: torch.device) -> tuple[list[list[str]], str]:
    """The table rows (path, img/s, vs reference) and a header line of the settings."""
    count = args.images or 512
    with tempfile.TemporaryDirectory(prefix="kdlab-bench-folder-") as tmp:
        note(f"writing {count} JPEGs of {SIDE}x{SIDE}")
        root = write_jpegs(Path(tmp), count)
        streamed = folder_data(root, SIZE, args.batch_size, device, in_memory=False)
        on_device = folder_data(root, SIZE, args.batch_size, device, False, decode="device")
        note("decoding them into memory for the in-memory path")
        memory = folder_data(root, SIZE, args.batch_size, device, in_memory=True)
        workers = streamed_workers(streamed)
        served = streamed.train.num_samples
        works = [
            epoch("kdlab streamed", streamed.train, device, served),
            epoch("kdlab streamed, decoded on the device", on_device.train, device, served),
            epoch("kdlab in memory", memory.train, device, served),
            epoch(
                "reference",
                reference_loader(root, args.batch_size, workers, device),
                device,
                served,
            ),
        ]
        measured = measure_together(works, rounds=3 if args.quick else 5, device=device)
    reference = measured["reference"].images_per_s
    rows = [
        [name, f"{m.images_per_s:,.0f}", f"{m.images_per_s / reference:.2f}x"]
        for name, m in measured.items()
    ]
    settings = (
        f"{count} JPEGs of {SIDE}x{SIDE} px, {CLASSES} classes, served at {SIZE} px, batch "
        f"{args.batch_size}, {workers} DataLoader worker(s) for the streamed path and the "
        "reference (data.num_workers=auto); one epoch of batches per timing, no model"
    )
    return rows, settings

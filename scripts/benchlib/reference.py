"""The loop most CIFAR repositories run: PIL transforms in DataLoader workers, eager fp32,
`loss.item()` every step. kdlab is measured against it."""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from kdlab.data.device_loader import DeviceLoader
from kdlab.data.normalize import channel_stats


class PILImages(Dataset):
    """uint8 images served as PIL images, as torchvision's CIFAR10 serves its arrays."""

    def __init__(self, images: Tensor, labels: Tensor, transform: Callable) -> None:
        self.images = images.permute(0, 2, 3, 1).contiguous().numpy()  # N,H,W,C like CIFAR10.data
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.transform(Image.fromarray(self.images[index])), self.labels[index]


def reference_loader(train: DeviceLoader, batch_size: int, device: torch.device) -> DataLoader:
    """The same uint8 training images behind the standard CIFAR augmentation pipeline."""
    images, labels = train.images.cpu(), train.labels.cpu()
    mean, std = channel_stats(images)
    transform = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )
    cuda = device.type == "cuda"
    return DataLoader(
        PILImages(images, labels, transform),
        batch_size=batch_size,
        shuffle=True,
        num_workers=2 if cuda else min(2, os.cpu_count() or 1),
        pin_memory=cuda,
        drop_last=True,
    )


def reference_epoch(
    model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader, device: torch.device
) -> float:
    """One epoch as those scripts write it; returns the mean loss they print."""
    model.train()
    criterion = nn.CrossEntropyLoss()
    total = 0.0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        total += loss.item()
    return total / len(loader)

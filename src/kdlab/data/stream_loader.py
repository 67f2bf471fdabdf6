"""The fallback for splits too big for device memory: decode on host workers, finish on device."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from kdlab.data.normalize import Normalizer
from kdlab.data.schedule import Schedule
from kdlab.errors import KdlabError


class _PlanBatches:
    """DataLoader batch sampler replaying the current epoch plan (read in the main process)."""

    def __init__(self, num_batches: int) -> None:
        self.num_batches = num_batches
        self.indices: tuple[torch.Tensor, ...] = ()

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        return (index.tolist() for index in self.indices)


class StreamLoader:
    """Streams uint8 batches from a host `dataset`, then augments and normalises on the device.

    `dataset[i]` is `(uint8 (3,S,S) image, label, problem)`: `problem` is "" or a one-line
    reason the image could not be read, raised here as a KdlabError (an exception raised in a
    worker would reach the user wrapped in a multi-line traceback). Batches follow the same
    schedule and views as the device-resident loader.
    """

    def __init__(
        self,
        dataset: Dataset,
        schedule: Schedule,
        normalize: Normalizer,
        device: torch.device,
        num_workers: int,
    ) -> None:
        self.schedule = schedule
        self.normalize = normalize
        self.device = device
        self.num_samples = schedule.num_samples
        self.epoch = 0
        self._batches = _PlanBatches(schedule.num_batches)
        self._loader = DataLoader(
            dataset,
            batch_sampler=self._batches,
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
            persistent_workers=num_workers > 0,
        )

    def __len__(self) -> int:
        return self.schedule.num_batches

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batch_indices(self) -> tuple[torch.Tensor, ...]:
        return self.schedule.plan(self.epoch).to(self.device).indices

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        plan = self.schedule.plan(self.epoch)
        self._batches.indices = plan.indices
        plan = plan.to(self.device)
        for step, (images, labels, problems) in enumerate(self._loader):
            failed = [problem for problem in problems if problem]
            if failed:
                raise KdlabError(failed[0])
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            yield self.normalize(plan.augment(step, images)), labels

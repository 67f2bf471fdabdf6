"""The fallback for splits too big for device memory: decode on host workers, finish on device."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from kdlab.data.device_decode import collate_payloads
from kdlab.data.normalize import Normalizer
from kdlab.data.schedule import EpochPlan, Schedule
from kdlab.errors import KdlabError


class _PlanBatches:
    """DataLoader batch sampler replaying the current epoch plan (read in the main process):
    sample indices, or (index, view) pairs when the workers apply the views."""

    def __init__(self, num_batches: int) -> None:
        self.num_batches = num_batches
        self.plan = EpochPlan(())
        self.with_views = False

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list]:
        views = self.plan.views
        for step, index in enumerate(self.plan.indices):
            if not self.with_views or views is None:
                yield index.tolist()
            else:  # one row of plain values per sample: cheap to send to a worker
                rows = zip(*(t.tolist() for t in views[step]), strict=True)
                yield list(zip(index.tolist(), rows, strict=True))


class StreamLoader:
    """Streams uint8 batches from a host `dataset`, then augments and normalises on the device.

    `dataset[i]` is `(uint8 (3,S,S) image, label, problem)`: `problem` is "" or a one-line
    reason the image could not be read, raised here as a KdlabError (an exception raised in a
    worker would reach the user wrapped in a multi-line traceback). Batches follow the same
    schedule and views as the device-resident loader: applied on the device to the decoded
    batch, or with `views_in_workers` by the dataset to each file (the random-resized crops
    of `data.augment=imagenet`, cut from the whole image rather than a stored square).
    With `finish` (data.decode=device: kdlab.data.device_decode) the dataset yields files'
    payloads and `finish(payloads, view or None)` decodes them and cuts the views (with
    `views_in_workers`) on the device.
    """

    def __init__(
        self,
        dataset: Dataset,
        schedule: Schedule,
        normalize: Normalizer,
        device: torch.device,
        num_workers: int,
        views_in_workers: bool = False,
        finish: Callable[[list[Any], Any], torch.Tensor] | None = None,
    ) -> None:
        self.schedule = schedule
        self.normalize = normalize
        self.device = device
        self.num_samples = schedule.num_samples
        self.epoch = 0
        self._batches = _PlanBatches(schedule.num_batches)
        self._batches.with_views = views_in_workers and finish is None
        self.views_before_device = views_in_workers
        self.finish = finish
        self._loader = DataLoader(
            dataset,
            batch_sampler=self._batches,
            collate_fn=None if finish is None else collate_payloads,  # payloads vary in size
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
        self._batches.plan = plan
        on_device = EpochPlan(()) if self.views_before_device else plan.to(self.device)
        for step, (images, labels, problems) in enumerate(self._loader):
            failed = [problem for problem in problems if problem]
            if failed:
                raise KdlabError(failed[0])
            if self.finish is None:
                images = images.to(self.device, non_blocking=True)
            else:
                views = plan.views[step] if self.views_before_device and plan.views else None
                images = self.finish(images, views)
            labels = labels.to(self.device, non_blocking=True)
            yield self.normalize(on_device.augment(step, images)), labels

"""The fast path: a whole split resident on the device, batched and augmented there."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from kdlab.data.normalize import Normalizer
from kdlab.data.schedule import EpochPlan, Schedule
from kdlab.data.strong_view import StrongView


class DeviceLoader:
    """Serves batches from uint8 images (N,3,S,S) and int64 labels kept on the device.

    Per batch: gather by index, crop/flip, convert and normalise, all as device tensor ops
    with no host-device sync, so the GPU never waits on Python or on a data pipeline. With a
    `strong` view (data.views=weak_strong) x holds each image's weak views, then its strong
    ones: (2B, C, S, S) for B labels.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        schedule: Schedule,
        normalize: Normalizer,
        device: torch.device,
        strong: StrongView | None = None,
    ) -> None:
        self.images = images.to(device)
        self.strong = strong
        self.labels = labels.to(device)
        self.schedule = schedule
        self.normalize = normalize
        self.device = device
        self.num_samples = schedule.num_samples
        self.epoch = 0

    def __len__(self) -> int:
        return self.schedule.num_batches

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_plan(self) -> EpochPlan:
        """The current epoch's batches and views (on the host), as `__iter__` serves them."""
        return self.schedule.plan(self.epoch)

    def batch_indices(self) -> tuple[torch.Tensor, ...]:
        return self.epoch_plan().to(self.device).indices

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.serve(self.epoch_plan())

    def serve(self, plan: EpochPlan) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of `plan`: gathered, augmented and normalised on the device."""
        plan = plan.to(self.device)
        for step in range(len(plan.indices)):
            yield self.batch(plan, step)

    def batch(self, plan: EpochPlan, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch `step` of `plan` (already on the device), exactly as `serve` yields it."""
        index = plan.indices[step]
        images = self.images[index]
        x = self.normalize(plan.augment(step, images))
        if self.strong is not None:
            x = torch.cat([x, self.normalize(self.strong(images))])
        return x, self.labels[index]

"""Training batches that carry the teacher's logits for exactly the view each image got."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from kdlab.data.device_loader import DeviceLoader
from kdlab.data.schedule import EpochPlan
from kdlab.engine.distributed import all_reduce_sum
from kdlab.engine.execution import autocast
from kdlab.methods.logit_cache.integrity import StoreDamaged
from kdlab.methods.logit_cache.store import LogitStore
from kdlab.methods.teacher import FrozenTeacher

log = logging.getLogger("kdlab")


class CachedLogitLoader:
    """The device-resident training loader, yielding (x, y, teacher logits).

    An epoch's batches are known before it starts, so the teacher runs then, once, on every
    training batch that holds a view the store lacks: on the whole batch, built by the code
    that builds the training step's batch, so its logits are the online teacher's to the
    bit (a teacher's output for an image can depend on the batch's size: the store is keyed
    on it). The epoch's logits go to the device in one piece and a step only slices its
    rows: a KD step costs a student step, and a second run over the same views (a sweep)
    runs no teacher at all. A store found damaged is set aside and rebuilt (or, where that
    fails, bypassed: the teacher then runs on every batch).
    """

    def __init__(
        self,
        train: DeviceLoader,
        store: LogitStore,
        teacher: FrozenTeacher,
        precision: str,
    ) -> None:
        self.train = train
        self.store: LogitStore | None = store  # None: bypassed, the teacher runs every batch
        self.directory = store.directory
        self.teacher = teacher
        self.precision = precision
        self.num_samples = train.num_samples
        self.computed = 0  # views the teacher ran on in this run, all ranks
        self.reused = 0  # views read from the store as they were, all ranks

    def __len__(self) -> int:
        return len(self.train)

    def set_epoch(self, epoch: int) -> None:
        self.train.set_epoch(epoch)

    def batch_indices(self) -> tuple[torch.Tensor, ...]:
        return self.train.batch_indices()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        plan = self.train.epoch_plan()
        logits = self._epoch_logits(plan)
        for step, (x, y) in enumerate(self.train.serve(plan)):
            yield x, y, logits[step]

    def _epoch_logits(self, plan: EpochPlan) -> torch.Tensor:
        """(batches, batch size, classes) on the device: the teacher's logits of the epoch."""
        keys = plan.view_keys().numpy()
        try:
            logits, computed = self._fill(plan, keys)
        except StoreDamaged as damage:
            self._replace_store(damage)
            logits, computed = self._fill(plan, keys)
        counts = torch.tensor([computed, keys.size - computed], device=self.train.device)
        done, kept = all_reduce_sum(counts).tolist()
        self.computed += done
        self.reused += kept
        return logits

    def _fill(self, plan: EpochPlan, keys: np.ndarray) -> tuple[torch.Tensor, int]:
        """The epoch's logits: the teacher's for the batches with a view the store lacks
        (those views stored), the store's for the others; and how many views were computed."""
        store = self.store
        lacking = np.ones(keys.shape, bool)
        if store is not None:
            lacking = np.isin(keys, store.missing(keys.ravel()))
        batches: list[torch.Tensor | None] = [None] * len(keys)
        on_device = plan.to(self.train.device)
        for step in np.flatnonzero(lacking.any(axis=1)):
            batches[step] = self._teacher(on_device, step)
            if store is not None and store.writable:
                new = lacking[step]
                store.write(keys[step][new], batches[step].cpu()[torch.from_numpy(new)])
        if store is not None and store.writable and lacking.any():
            store.commit(keys[lacking])
        full = [step for step, logits in enumerate(batches) if logits is None]
        if store is not None and full:
            stored = store.read(keys[full].ravel()).to(self.train.device)
            for step, logits in zip(full, stored.view(len(full), keys.shape[1], -1), strict=True):
                batches[step] = logits
        return torch.stack(batches), (len(keys) - len(full)) * keys.shape[1]

    def _teacher(self, plan: EpochPlan, step: int) -> torch.Tensor:
        """The teacher's logits for batch `step`, as the online teacher computes them."""
        x, _ = self.train.batch(plan, step)
        with autocast(self.train.device, self.precision):
            return self.teacher.logits(x)

    def _replace_store(self, damage: StoreDamaged) -> None:
        """Set the damaged store aside for a new one; where that fails, do without."""
        assert self.store is not None  # only a store can be found damaged
        try:
            self.store = self.store.replaced(damage)
        except OSError as error:
            log.warning(
                "teacher logits: computed every step from now on; the damaged store %s could "
                "not be replaced (%s)",
                self.directory,
                str(error),  # not the error: its traceback would keep the old store mapped
            )
            self.store = None

    def stats(self) -> dict[str, Any]:
        """What summary.json records: where the logits are and how many views were computed
        and reused, summed over the ranks (and, restored with `load_state_dict`, over the
        epochs before a resume)."""
        return {
            "dir": str(self.directory),
            "views_computed": self.computed,
            "views_reused": self.reused,
        }

    def state_dict(self) -> dict[str, int]:
        """The counts to keep in a checkpoint (the same on every rank)."""
        return {"views_computed": self.computed, "views_reused": self.reused}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue the counts of the run a checkpoint was saved in."""
        self.computed = int(state["views_computed"])
        self.reused = int(state["views_reused"])

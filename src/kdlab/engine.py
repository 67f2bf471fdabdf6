"""The one fit/evaluate loop behind every command and stage.

What differs between teacher, baseline, KD and the FitNet stages is the `Stage`: its
objective, which parameters train and which modules stay frozen. Metrics are accumulated on
the device and read once per log interval, so a training step has no host-device sync.
Under torchrun each rank trains on its shard through DistributedDataParallel and every read
sums over the ranks, so the figures always cover the whole split.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from tqdm import tqdm

from kdlab.checkpoint import save_checkpoint
from kdlab.compiling import CompiledOrEager
from kdlab.data import BatchLoader, DataBundle
from kdlab.distributed import (
    all_reduce_sum,
    barrier,
    broadcast_buffers,
    data_parallel,
    is_main,
    world_size,
)
from kdlab.errors import KdlabError
from kdlab.objectives import CrossEntropy, Objective, StepOutput
from kdlab.optim import build_optimizer, build_scheduler
from kdlab.runlog import RunLogger
from kdlab.runtime import autocast, eval_mode, resolve_precision, rng_state, set_rng_state

log = logging.getLogger("kdlab")


@dataclass
class Stage:
    """One call of `fit`: what to minimise, what trains, for how long."""

    name: str
    objective: Objective
    param_groups: list[dict[str, Any]]
    epochs: int
    frozen: Sequence[nn.Module] = ()  # kept in eval mode: no BN statistics updates
    select: str = "val_acc"  # val_acc (higher is better) or val_loss (lower is better)
    # The training batches, when not the data set's own: e.g. (x, y, teacher logits) from the
    # logit cache. Every batch is (x, y, *extra); extra reaches the objective as arguments.
    train: BatchLoader | None = None


@dataclass
class StageResult:
    """The figures of a finished stage, as they go into summary.json."""

    name: str
    epochs: int
    best_epoch: int
    best: dict[str, Any]  # the epoch record of the selected checkpoint
    last: dict[str, Any]
    train_time_s: float
    train_images: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        return self.train_images / self.train_time_s if self.train_time_s > 0 else 0.0


class Accumulator:
    """Sums of per-batch losses and hit counts, kept on the device until read."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.sums: dict[str, Tensor] = {}
        self.count = 0

    def add(self, losses: dict[str, Tensor], logits: Tensor | None, y: Tensor) -> None:
        n = y.shape[0]
        for key, value in losses.items():
            weighted = value.detach().float() * n
            self.sums[key] = self.sums[key] + weighted if key in self.sums else weighted
        if logits is not None:
            hits = topk_hits(logits.detach(), y)
            self.sums["correct"] = self.sums.get("correct", 0) + hits[0]
            self.sums["correct5"] = self.sums.get("correct5", 0) + hits[1]
        self.count += n

    def read(self) -> dict[str, float]:
        """Means over the samples seen on all ranks (one collective, one host sync); accuracies
        in percent."""
        if not self.sums:
            return {}
        keys = list(self.sums)
        count = torch.tensor(float(self.count), device=self.device)
        totals = all_reduce_sum(torch.stack([*(self.sums[k].float() for k in keys), count]))
        *values, total = totals.tolist()
        out = {}
        for key, value in zip(keys, values, strict=True):
            if key == "correct":
                out["acc"] = 100.0 * value / total
            elif key == "correct5":
                out["acc5"] = 100.0 * value / total
            else:
                out[key] = value / total
        return out


def topk_hits(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Top-1 and top-5 hit counts as device tensors (top-5 = top-k for k = min(5, C))."""
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    match = top == y[:, None]
    return match[:, 0].sum(), match.any(dim=1).sum()


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    objective: Objective,
    loader: BatchLoader,
    device: torch.device,
    precision: str,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """Mean losses, top-1/top-5 accuracy; with `num_classes`, also the confusion matrix."""
    acc = Accumulator(device)
    confusion = None
    if num_classes is not None:
        confusion = torch.zeros(num_classes * num_classes, dtype=torch.long, device=device)
    with eval_mode(model, objective):
        for x, y in loader:
            with autocast(device, precision):
                out = objective(model, x, y)
            acc.add(out.losses, out.logits, y)
            if confusion is not None and out.logits is not None:
                pred = out.logits.argmax(dim=1)
                confusion += torch.bincount(y * num_classes + pred, minlength=confusion.numel())
    result: dict[str, Any] = acc.read()
    if confusion is not None:
        result["confusion"] = all_reduce_sum(confusion).view(num_classes, num_classes).cpu()
    return result


class StepModule(nn.Module):
    """A stage's training step as one module: the objective applied to the model.

    DDP wraps this rather than the model, so it averages the gradients of everything the
    stage trains (a FitNet regressor inside the objective too) whatever part of the model the
    objective runs (a hint stage runs only the student's prefix).
    """

    def __init__(self, model: nn.Module, objective: Objective) -> None:
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, x: Tensor, y: Tensor, *extra: Tensor) -> StepOutput:
        return self.objective(self.model, x, y, *extra)


def buffer_snapshot(*modules: nn.Module) -> Callable[[], None]:
    """An undo for one forward pass: it restores the modules' buffers (BatchNorm statistics),
    so a skipped non-finite batch leaves no NaN in them."""
    buffers = [b for module in modules for b in module.buffers()]
    saved = [b.clone() for b in buffers]

    def undo() -> None:
        for buffer, value in zip(buffers, saved, strict=True):
            buffer.copy_(value)

    return undo


class Trainer:
    """Runs stages for one model: optimisation, evaluation, checkpoints, logs."""

    def __init__(
        self,
        cfg: DictConfig,
        run_dir: Path,
        data: DataBundle,
        model: nn.Module,
        device: torch.device,
        logger: RunLogger,
        show_bars: bool,
    ) -> None:
        self.cfg = cfg
        self.run_dir = run_dir
        self.ckpt_dir = run_dir / "checkpoints"
        self.data = data
        self.model = model
        self.device = device
        self.logger = logger
        self.show_bars = show_bars
        self.precision = resolve_precision(cfg.trainer.precision, device)
        self.history: list[dict[str, Any]] = []  # finished earlier stages, for resuming
        self.skipped_batches = 0  # non-finite batches skipped (trainer.skip_nonfinite)

    def checkpoint_state(self, stage: Stage, optimizer, scheduler, scaler, extra) -> dict:
        return {
            "model": self.model.state_dict(),
            "objective": stage.objective.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "stage": stage.name,
            "rng": rng_state(),
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "num_classes": self.data.num_classes,
            "class_names": list(self.data.class_names),
            "data": self.data.name,
            "history": self.history,
            "skipped_batches": self.skipped_batches,
            **extra,
        }

    def fit(
        self, stage: Stage, epoch_offset: int = 0, resume: dict[str, Any] | None = None
    ) -> StageResult:
        """Train `stage` for its epochs; returns the selected (best) and last records.

        `epoch_offset` numbers this stage's epochs after earlier stages' (one x-axis);
        `resume` is a last.pt state of this stage to continue from.
        """
        t = self.cfg.trainer
        train = stage.train if stage.train is not None else self.data.train
        steps_per_epoch = len(train)
        if steps_per_epoch == 0:
            raise KdlabError(
                f"the training split has {train.num_samples} images, fewer than one batch of "
                f"{t.batch_size}: lower trainer.batch_size or raise data.train_size"
            )
        optimizer = build_optimizer(stage.param_groups, self.cfg.optim, self.device)
        total_steps = steps_per_epoch * stage.epochs
        scheduler = build_scheduler(optimizer, total_steps, steps_per_epoch, self.cfg.sched)
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        trained = [p for g in optimizer.param_groups for p in g["params"]]
        step_module: nn.Module = StepModule(self.model, stage.objective)
        if self.cfg.trainer.compile:  # the whole step: student, teacher forward and the loss
            step_module = CompiledOrEager(step_module)
        step = data_parallel(step_module, self.device, trained)
        epoch_images = train.num_samples * world_size()

        start = 0
        best_score, best_record, last_record = -math.inf, {}, {}
        train_time, train_images = 0.0, 0
        if resume is not None:
            self.model.load_state_dict(resume["model"])
            stage.objective.load_state_dict(resume["objective"])
            optimizer.load_state_dict(resume["optimizer"])
            scheduler.load_state_dict(resume["scheduler"])
            scaler.load_state_dict(resume["scaler"])
            set_rng_state(resume["rng"])
            start = resume["stage_epoch"]
            best_score, best_record = resume["best_score"], resume["best_record"]
            last_record = resume["last_record"]
            train_time, train_images = resume["train_time_s"], resume["train_images"]
            self.skipped_batches = resume["skipped_batches"]
            log.info("resuming %s after epoch %d", stage.name, epoch_offset + start)

        for stage_epoch in range(start + 1, stage.epochs + 1):
            epoch = epoch_offset + stage_epoch
            train.set_epoch(epoch)
            tic = time.perf_counter()
            metrics = self._train_epoch(
                stage, train, step, optimizer, scheduler, scaler, trained, epoch
            )
            broadcast_buffers(self.model)  # evaluate (and save) rank 0's BatchNorm statistics
            epoch_time = time.perf_counter() - tic
            train_time += epoch_time
            train_images += epoch_images
            record: dict[str, Any] = {"epoch": epoch, "stage": stage.name}
            record.update({f"train/{k}": v for k, v in metrics.items()})
            record["train/images_per_s"] = epoch_images / max(epoch_time, 1e-9)
            record["lr"] = scheduler.get_last_lr()[0]
            if self.data.val is not None:
                val = evaluate(
                    self.model, stage.objective, self.data.val, self.device, self.precision
                )
                if not t.skip_nonfinite:  # finite train losses can still leave broken weights
                    self._check_finite({f"val/{k}": v for k, v in val.items()}, epoch, len(train))
                record.update({f"val/{k}": v for k, v in val.items()})
            self.logger.epoch(record)
            last_record = record
            score = self._score(stage, record)
            improved = score > best_score
            if improved:
                best_score, best_record = score, record
            extra = {
                "epoch": epoch,
                "stage_epoch": stage_epoch,
                "best_score": best_score,
                "best_record": best_record,
                "last_record": last_record,
                "train_time_s": train_time,
                "train_images": train_images,
            }
            if is_main():
                state = self.checkpoint_state(stage, optimizer, scheduler, scaler, extra)
                if improved:
                    save_checkpoint(state, self.ckpt_dir / "best.pt")
                save_checkpoint(state, self.ckpt_dir / "last.pt")
            log.info(self._epoch_line(record, improved))

        barrier()  # every rank may read the checkpoints rank 0 has written once fit returns
        return StageResult(
            name=stage.name,
            epochs=stage.epochs,
            best_epoch=best_record["epoch"],
            best=best_record,
            last=last_record,
            train_time_s=train_time,
            train_images=train_images,
        )

    def _score(self, stage: Stage, record: dict[str, Any]) -> float:
        """Model selection on the validation split (train figures when there is none)."""
        split = "val" if self.data.val is not None else "train"
        if stage.select == "val_acc" and f"{split}/acc" in record:
            return record[f"{split}/acc"]
        return -record[f"{split}/loss"]

    def _train_epoch(
        self,
        stage: Stage,
        train: BatchLoader,
        step: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        scaler: torch.amp.GradScaler,
        trained: list[Tensor],
        epoch: int,
    ) -> dict[str, float]:
        t = self.cfg.trainer
        steps_per_epoch = len(train)
        self.model.train()
        stage.objective.train()
        for module in stage.frozen:
            module.eval()
        epoch_acc = Accumulator(self.device)
        window = Accumulator(self.device)
        bar = tqdm(
            train,
            total=steps_per_epoch,
            desc=f"{stage.name} epoch {epoch}",
            leave=False,
            dynamic_ncols=True,
            disable=not self.show_bars,
        )
        first_step = (epoch - 1) * steps_per_epoch
        for i, batch in enumerate(bar):
            y = batch[1]
            undo = buffer_snapshot(self.model, stage.objective) if t.skip_nonfinite else None
            with autocast(self.device, self.precision):
                out = step(*batch)
            if undo is not None and not self._finite_step(out.losses):
                undo()
                continue
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(out.losses["loss"]).backward()
            if t.grad_clip is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(trained, t.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            epoch_acc.add(out.losses, out.logits, y)
            window.add(out.losses, out.logits, y)
            if (i + 1) % t.log_every == 0:
                recent = window.read()
                self._check_finite(recent, epoch, i + 1)
                self.logger.step(
                    first_step + i + 1, {f"train_step/{k}": v for k, v in recent.items()}
                )
                bar.set_postfix({k: f"{v:.3g}" for k, v in recent.items() if k in ("loss", "acc")})
                window = Accumulator(self.device)
        metrics = epoch_acc.read()
        self._check_finite(metrics, epoch, steps_per_epoch)
        return metrics

    def _finite_step(self, losses: dict[str, Tensor]) -> bool:
        """trainer.skip_nonfinite: count and skip a batch whose loss is NaN/Inf (one sync).

        Under DDP every rank skips the step if any rank's loss is non-finite: the ranks must
        take the same steps to stay in step (and identical).
        """
        bad = all_reduce_sum((~torch.isfinite(losses["loss"].detach())).float())
        if not bool(bad):
            return True
        self.skipped_batches += 1
        return False

    @staticmethod
    def _check_finite(metrics: dict[str, float], epoch: int, step: int) -> None:
        bad = [k for k, v in metrics.items() if not math.isfinite(v)]
        if bad:
            raise KdlabError(
                f"{bad[0]} became non-finite by epoch {epoch}, step {step}: lower optim.lr, "
                "set trainer.grad_clip or trainer.skip_nonfinite=true, or use "
                "trainer.precision=32 (last good checkpoint kept)"
            )

    def _epoch_line(self, record: dict[str, Any], improved: bool) -> str:
        parts = [f"{record['stage']} epoch {record['epoch']}"]
        for key in ("train/loss", "train/acc", "val/loss", "val/acc", "val/loss_fit"):
            if key in record:
                fmt = ".2f" if key.endswith("acc") else ".4f"
                parts.append(f"{key} {record[key]:{fmt}}")
        parts.append(f"{record['train/images_per_s']:.0f} img/s")
        return " | ".join(parts) + (" *" if improved else "")

    def test(self, state: dict[str, Any]) -> dict[str, Any]:
        """Test accuracy (and confusion) of a checkpoint's weights, with plain cross-entropy."""
        self.model.load_state_dict(state["model"])
        return evaluate(
            self.model,
            CrossEntropy(),
            self.data.test,
            self.device,
            self.precision,
            num_classes=self.data.num_classes,
        )

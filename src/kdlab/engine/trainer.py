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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from kdlab.data import BatchLoader, DataBundle
from kdlab.engine.checkpoint import Checkpoint, data_facts
from kdlab.engine.compiling import CompiledOrEager
from kdlab.engine.distributed import (
    all_reduce_sum,
    barrier,
    broadcast_buffers,
    data_parallel,
    is_main,
    world_size,
)
from kdlab.engine.dot import DOT
from kdlab.engine.execution import autocast, rng_state, set_rng_state
from kdlab.engine.metrics import Accumulator, evaluate
from kdlab.engine.objective import CrossEntropy
from kdlab.engine.optim import build_optimizer, build_scheduler
from kdlab.engine.run_logger import RunLogger
from kdlab.engine.settings import OptimConfig, SchedConfig, TrainerConfig
from kdlab.engine.stage import Stage, StageResult, StepModule, buffer_snapshot
from kdlab.errors import KdlabError

log = logging.getLogger("kdlab")


@dataclass
class StageLoop:
    """The optimisation objects of one stage, built when it starts."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    trained: list[Tensor]
    step: nn.Module  # the objective applied to the model (compiled, under DDP)
    train: BatchLoader  # the stage's training batches


@dataclass
class StageProgress:
    """Where a stage stands after its last finished epoch (saved in every checkpoint)."""

    stage_epoch: int = 0
    best_score: float = -math.inf
    best_record: dict[str, Any] = field(default_factory=dict)
    last_record: dict[str, Any] = field(default_factory=dict)
    train_time_s: float = 0.0
    train_images: int = 0


@dataclass(frozen=True)
class RunPlace:
    """Where and how a run executes: its dir, device, precision, logger and resolved config."""

    run_dir: Path
    device: torch.device
    precision: str  # trainer.precision resolved for the device
    logger: RunLogger
    show_bars: bool
    config: dict[str, Any]  # the resolved config, stored in every checkpoint
    teacher: dict[str, Any] = field(default_factory=dict)  # Checkpoint.teacher: path, sha256


class Trainer:
    """Runs stages for one model: optimisation, evaluation, checkpoints, logs."""

    def __init__(
        self,
        model: nn.Module,
        data: DataBundle,
        settings: TrainerConfig,
        optim: OptimConfig,
        sched: SchedConfig,
        place: RunPlace,
    ) -> None:
        self.model = model
        self.data = data
        self.settings = settings
        self.optim = optim
        self.sched = sched
        self.place = place
        self.device = place.device
        self.precision = place.precision
        self.ckpt_dir = place.run_dir / "checkpoints"
        self.history: list[StageResult] = []  # earlier stages of this run (engine.stages)
        self.skipped_batches = 0  # non-finite batches skipped (trainer.skip_nonfinite)

    def fit(
        self, stage: Stage, epoch_offset: int = 0, resume: Checkpoint | None = None
    ) -> StageResult:
        """Train `stage` for its epochs; returns the selected (best) and last records.

        `epoch_offset` numbers this stage's epochs after earlier stages' (one x-axis);
        `resume` is a last.pt checkpoint of this stage to continue from.
        """
        train = stage.train if stage.train is not None else self.data.train
        if len(train) == 0:
            raise KdlabError(
                f"the training split holds no full batch of {self.settings.batch_size}: lower "
                "trainer.batch_size or raise data.train_size"
            )
        for group in stage.param_groups:  # what this stage trains, though an earlier froze it
            for param in group["params"]:
                param.requires_grad_(True)
        for module in stage.frozen:
            module.requires_grad_(False)
        loop = self._loop(stage, train)
        progress = StageProgress()
        if resume is not None:
            progress = self._restore(stage, loop, resume)
            log.info("resuming %s after epoch %d", stage.name, epoch_offset + progress.stage_epoch)
        for stage_epoch in range(progress.stage_epoch + 1, stage.epochs + 1):
            self._epoch(stage, loop, train, epoch_offset + stage_epoch, progress)
        barrier()  # every rank may read the checkpoints rank 0 has written once fit returns
        return StageResult(
            name=stage.name,
            epochs=stage.epochs,
            best_epoch=progress.best_record["epoch"],
            best=progress.best_record,
            last=progress.last_record,
            train_time_s=progress.train_time_s,
            train_images=progress.train_images,
        )

    def _loop(self, stage: Stage, train: BatchLoader) -> StageLoop:
        steps_per_epoch = len(train)
        optimizer = build_optimizer(stage.param_groups, self.optim, self.device)
        total_steps = steps_per_epoch * stage.epochs
        scheduler = build_scheduler(optimizer, total_steps, steps_per_epoch, self.sched)
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        trained = [p for g in optimizer.param_groups for p in g["params"]]
        step_module: nn.Module = StepModule(self.model, stage.objective)
        if self.settings.compile:  # the whole step: student, teacher forward and the loss
            step_module = CompiledOrEager(step_module)
        step = data_parallel(step_module, self.device, trained)
        return StageLoop(optimizer, scheduler, scaler, trained, step, train)

    def _restore(self, stage: Stage, loop: StageLoop, state: Checkpoint) -> StageProgress:
        self.model.load_state_dict(state.model)
        stage.objective.load_state_dict(state.objective)
        loop.optimizer.load_state_dict(state.optimizer)
        loop.scheduler.load_state_dict(state.scheduler)
        loop.scaler.load_state_dict(state.scaler)
        set_rng_state(state.rng)
        if state.loader and hasattr(loop.train, "load_state_dict"):
            loop.train.load_state_dict(state.loader)  # e.g. the logit cache's view counts
        self.skipped_batches = state.skipped_batches
        return StageProgress(
            stage_epoch=state.stage_epoch,
            best_score=state.best_score,
            best_record=state.best_record,
            last_record=state.last_record,
            train_time_s=state.train_time_s,
            train_images=state.train_images,
        )

    def _epoch(
        self, stage: Stage, loop: StageLoop, train: BatchLoader, epoch: int, p: StageProgress
    ) -> None:
        """Train one epoch, evaluate, log, save; `p` moves on to this epoch."""
        train.set_epoch(epoch)
        stage.objective.set_epoch(p.stage_epoch + 1)  # epoch-dependent weights (a warm-up)
        tic = time.perf_counter()
        metrics = self._train_epoch(stage, train, loop, epoch)
        broadcast_buffers(self.model)  # evaluate (and save) rank 0's BatchNorm statistics
        epoch_time = time.perf_counter() - tic
        epoch_images = train.num_samples * world_size()
        p.train_time_s += epoch_time
        p.train_images += epoch_images
        record: dict[str, Any] = {"epoch": epoch, "stage": stage.name}
        record.update({f"train/{k}": v for k, v in metrics.items()})
        record["train/images_per_s"] = epoch_images / max(epoch_time, 1e-9)
        record["lr"] = loop.scheduler.get_last_lr()[0]
        if self.data.val is not None:
            val = evaluate(self.model, stage.objective, self.data.val, self.device, self.precision)
            if not self.settings.skip_nonfinite:  # finite train losses can leave broken weights
                self._check_finite({f"val/{k}": v for k, v in val.items()}, epoch, len(train))
            record.update({f"val/{k}": v for k, v in val.items()})
        self.logger.epoch(record)
        p.stage_epoch += 1
        p.last_record = record
        score = self._score(stage, record)
        improved = score > p.best_score
        if improved:
            p.best_score, p.best_record = score, record
        if is_main():
            state = self._checkpoint(stage, loop, p, epoch)
            if improved:
                state.write(self.ckpt_dir / "best.pt")
            state.write(self.ckpt_dir / "last.pt")
        log.info(self._epoch_line(record, improved))

    @property
    def logger(self) -> RunLogger:
        return self.place.logger

    def _checkpoint(
        self, stage: Stage, loop: StageLoop, p: StageProgress, epoch: int
    ) -> Checkpoint:
        return Checkpoint(
            model=self.model.state_dict(),
            config=self.place.config,
            teacher=self.place.teacher,
            **data_facts(self.data),
            stage=stage.name,
            epoch=epoch,
            stage_epoch=p.stage_epoch,
            objective=stage.objective.state_dict(),
            optimizer=loop.optimizer.state_dict(),
            scheduler=loop.scheduler.state_dict(),
            scaler=loop.scaler.state_dict(),
            rng=rng_state(),
            loader=loop.train.state_dict() if hasattr(loop.train, "state_dict") else {},
            history=[asdict(result) for result in self.history],
            best_score=p.best_score,
            best_record=p.best_record,
            last_record=p.last_record,
            train_time_s=p.train_time_s,
            train_images=p.train_images,
            skipped_batches=self.skipped_batches,
        )

    def _score(self, stage: Stage, record: dict[str, Any]) -> float:
        """Model selection on the validation split (train figures when there is none)."""
        split = "val" if self.data.val is not None else "train"
        if stage.select == "val_acc" and f"{split}/acc" in record:
            return record[f"{split}/acc"]
        return -record[f"{split}/loss"]

    def _train_epoch(
        self, stage: Stage, train: BatchLoader, loop: StageLoop, epoch: int
    ) -> dict[str, float]:
        t = self.settings
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
            disable=not self.place.show_bars,
        )
        first_step = (epoch - 1) * steps_per_epoch
        indices = train.batch_indices() if stage.objective.uses_indices else None
        for i, batch in enumerate(bar):
            y = batch[1]
            named = {} if indices is None else {"indices": indices[i]}
            undo = buffer_snapshot(self.model, stage.objective) if t.skip_nonfinite else None
            with autocast(self.device, self.precision):
                out = loop.step(*batch, **named)
            if undo is not None and not self._finite_step(out.losses):
                undo()
                continue
            self._optimise(loop, out.losses["loss"], out.split)
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

    def _optimise(self, loop: StageLoop, loss: Tensor, split: tuple[Tensor, Tensor] | None) -> None:
        """One optimiser step on `loss` (scaled for fp16, clipped if asked), then the lr's."""
        if isinstance(loop.optimizer, DOT):
            self._dot_step(loop.optimizer, loss, split)
            loop.scheduler.step()
            return
        loop.optimizer.zero_grad(set_to_none=True)
        loop.scaler.scale(loss).backward()
        if self.settings.grad_clip is not None:
            loop.scaler.unscale_(loop.optimizer)
            torch.nn.utils.clip_grad_norm_(loop.trained, self.settings.grad_clip)
        loop.scaler.step(loop.optimizer)
        loop.scaler.update()
        loop.scheduler.step()

    @staticmethod
    def _dot_step(optimizer: DOT, loss: Tensor, split: tuple[Tensor, Tensor] | None) -> None:
        """optim=dot as mdistiller's DOT.train_iter: the distillation part's gradients first,
        recorded, then the task part's, and one step on both (`split` None: `loss` is all
        task)."""
        optimizer.zero_grad(set_to_none=True)
        task = loss
        if split is not None:
            task, distillation = split
            distillation.backward(retain_graph=True)
            optimizer.record_distillation()
            optimizer.zero_grad(set_to_none=True)
        task.backward()
        optimizer.step()

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

    def _check_finite(self, metrics: dict[str, float], epoch: int, step: int) -> None:
        """Stop on a NaN/Inf metric, with the remedies that apply to this run: fp32 only where
        it runs in lower precision, the checkpoint only where one was written."""
        bad = [k for k, v in metrics.items() if not math.isfinite(v)]
        if not bad:
            return
        remedies = ["lower optim.lr", "set trainer.grad_clip or trainer.skip_nonfinite=true"]
        if self.precision != "32":
            remedies.append(f"use trainer.precision=32 (this run: {self.precision})")
        kept = (self.ckpt_dir / "last.pt").is_file()
        raise KdlabError(
            f"{bad[0]} became non-finite by epoch {epoch}, step {step}: "
            + ", ".join(remedies[:-1])
            + f" or {remedies[-1]}"
            + (" (last good checkpoint kept)" if kept else "")
        )

    def _epoch_line(self, record: dict[str, Any], improved: bool) -> str:
        parts = [f"{record['stage']} epoch {record['epoch']}"]
        for key in ("train/loss", "train/acc", "val/loss", "val/acc"):
            if key in record:
                fmt = ".2f" if key.endswith("acc") else ".4f"
                parts.append(f"{key} {record[key]:{fmt}}")
        parts.append(f"{record['train/images_per_s']:.0f} img/s")
        return " | ".join(parts) + (" *" if improved else "")

    def test_accuracy(self, weights: dict[str, Any]) -> dict[str, Any]:
        """Test accuracy (and confusion) of `weights` loaded into the model, with plain
        cross-entropy: the one figure measured on the test split."""
        self.model.load_state_dict(weights)
        return evaluate(
            self.model,
            CrossEntropy(),
            self.data.test,
            self.device,
            self.precision,
            num_classes=self.data.num_classes,
        )

"""CRD through the engine, in process: the batches' sample indices reach the objective, the
memory bank moves exactly at them, and a resumed run continues with the saved bank."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kdlab.data import DataBundle
from kdlab.data.device_loader import DeviceLoader
from kdlab.data.normalize import Normalizer
from kdlab.data.schedule import EvalSchedule, TrainSchedule
from kdlab.engine.checkpoint import Checkpoint
from kdlab.engine.objective import CrossEntropy
from kdlab.engine.run_logger import NullLogger
from kdlab.engine.stage import Stage
from kdlab.engine.trainer import RunPlace, Trainer
from kdlab.methods.registry import build_method
from kdlab.methods.teacher import FrozenTeacher
from kdlab.models import build_model
from kdlab.runs.preflight import compose_config
from test_data import build, device_loader, folder_cfg, read_index, write_folders

CPU = torch.device("cpu")
N, SIZE, BATCH = 38, 16, 8  # 4 batches an epoch: 6 images left out, a different 6 each epoch


def test_batch_indices_are_the_samples_each_batch_serves():
    loader = device_loader(n=70, batch=8)  # augmented: the indices survive crops and flips
    for epoch in (1, 2):
        loader.set_epoch(epoch)
        served = [read_index(x) for x, _ in loader]
        indices = loader.batch_indices()
        assert len(indices) == len(served) == 8
        assert all(torch.equal(i, s) for i, s in zip(indices, served, strict=True))


def test_streamed_batches_have_the_in_memory_batches_indices(tmp_path):
    """Both loaders serve the same batches (test_data), so the same indices."""
    write_folders(tmp_path, test_dir="val")
    in_memory = build(folder_cfg(tmp_path), batch_size=4, eval_batch_size=3)
    streamed = build(folder_cfg(tmp_path, in_memory_max_mb=0), batch_size=4, eval_batch_size=3)
    assert type(streamed.train).__name__ == "StreamLoader"
    for loader in (in_memory.train, streamed.train):
        loader.set_epoch(3)
    pairs = zip(in_memory.train.batch_indices(), streamed.train.batch_indices(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


class IndexProbe(CrossEntropy):
    """Cross-entropy that records what the engine passes with each training batch."""

    uses_indices = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[torch.Tensor, torch.Tensor | None]] = []

    def forward(self, model, x, y, teacher_logits=None, indices=None):
        if self.training:
            self.seen.append((read_index(x), indices))
        return super().forward(model, x, y)


def test_the_engine_passes_each_training_batch_its_own_indices(tmp_path):
    """Read back from the (augmented) images themselves, in every step of two epochs."""
    train, test = device_loader(n=70, batch=8), device_loader(n=20, batch=20, eval_=True)
    data = DataBundle("indexed", 5, list("abcde"), 16, train, test, test, train_images=70)
    cfg = compose_config("train", ["model=cnn_student", "trainer.batch_size=8"])
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 5))
    probe = IndexProbe()
    place = RunPlace(tmp_path, CPU, "32", NullLogger(), False, {})
    stage = Stage("train", probe, [{"params": list(model.parameters())}], epochs=2)
    Trainer(model, data, cfg.trainer, cfg.optim, cfg.sched, place).fit(stage)
    assert len(probe.seen) == 16
    assert all(i is not None and torch.equal(images, i) for images, i in probe.seen)


@pytest.fixture(scope="module")
def setting():
    """The run's config, a fixed teacher and a tiny data set of random 16x16 images."""
    cfg = compose_config(
        "distill", ["model=resnet8", "loss=crd", "sched=constant", f"trainer.batch_size={BATCH}"]
    )
    torch.manual_seed(123)
    teacher = FrozenTeacher(build_model("resnet8", 10))
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (N, 3, SIZE, SIZE), dtype=torch.uint8, generator=g)
    labels = torch.arange(N) % 10
    normalize = Normalizer((0.5,) * 3, (0.25,) * 3, CPU)
    epochs = TrainSchedule(N, BATCH, seed=0, augment_pad=4)
    train = DeviceLoader(images, labels, epochs, normalize, CPU)
    test = DeviceLoader(images[:20], labels[:20], EvalSchedule(20, 20), normalize, CPU)
    names = [str(c) for c in range(10)]
    data = DataBundle("random", 10, names, SIZE, train, None, test, train_images=N, dropped=6)
    return cfg, teacher, data


def fit(setting, run_dir: Path, epochs: int, seed: int, resume: Checkpoint | None = None):
    """A crd distill stage as `kdlab distill` builds it (heads trained with the student)."""
    cfg, teacher, data = setting
    torch.manual_seed(seed)
    student = build_model("resnet8", 10)
    objective = build_method(cfg, teacher, student, SIZE, data.train_images)
    start = {k: v.clone() for k, v in objective.state_dict().items()}
    params = [*student.parameters(), *objective.parameters()]
    stage = Stage("distill", objective, [{"params": params}], epochs)
    place = RunPlace(run_dir, CPU, "32", NullLogger(), False, {})
    Trainer(student, data, cfg.trainer, cfg.optim, cfg.sched, place).fit(stage, resume=resume)
    return student, objective, start


@pytest.fixture(scope="module")
def one_epoch(setting, tmp_path_factory):
    """A one-epoch run: its objective, the objective's state at the start, and its run dir."""
    run_dir = tmp_path_factory.mktemp("crd") / "cut"
    _, objective, start = fit(setting, run_dir, epochs=1, seed=0)
    return objective, start, run_dir


def test_a_training_epoch_moves_the_bank_rows_of_exactly_its_samples(setting, one_epoch):
    objective, start, _ = one_epoch
    data = setting[2]
    data.train.set_epoch(1)  # the engine numbers epochs from 1
    seen = torch.cat(data.train.batch_indices())
    unseen = torch.ones(N, dtype=torch.bool).index_fill(0, seen, False)
    assert seen.numel() == 32 and unseen.sum() == 6
    for side in ("student", "teacher"):
        bank = getattr(objective.memory, side)
        torch.testing.assert_close(bank[seen].norm(dim=1), torch.ones(32))
        assert (bank[seen] != start[f"memory.{side}"][seen]).any(dim=1).all()
        assert torch.equal(bank[unseen], start[f"memory.{side}"][unseen])
    assert (objective.memory.z > 0).all()
    for head in ("embed_s", "embed_t"):  # trained with the student
        key = f"{head}.linear.weight"
        assert not torch.equal(objective.state_dict()[key], start[key])


def test_a_resumed_crd_run_continues_with_the_saved_bank(setting, one_epoch, tmp_path):
    """Two epochs in one go, and one epoch then a resume (from objects built on another seed,
    so a fresh bank), end bit for bit alike: bank, normalisers, heads and student."""
    student, objective, _ = fit(setting, tmp_path / "whole", epochs=2, seed=0)
    cut = one_epoch[2]
    saved = Checkpoint.read(cut / "checkpoints" / "last.pt", CPU)
    assert saved.objective["memory.student"].shape == (N, 128)
    resumed, resumed_objective, fresh = fit(setting, cut, epochs=2, seed=1, resume=saved)
    assert not torch.equal(fresh["memory.student"], saved.objective["memory.student"])
    for ours, theirs in ((objective, resumed_objective), (student, resumed)):
        expected, got = ours.state_dict(), theirs.state_dict()
        assert expected.keys() == got.keys()
        assert all(torch.equal(expected[k], got[k]) for k in expected), [
            k for k in expected if not torch.equal(expected[k], got[k])
        ]

"""Training speed of kdlab, against this device's limit and against the usual CIFAR loop.

For each model, in one process, at one batch size, on CIFAR-sized (32x32) synthetic images:

  raw        forward + backward + optimizer step on one pre-staged batch: the ceiling
  kdlab      a whole 1-epoch `Trainer.fit` (device-resident loader, batched crop/flip,
             normalisation, metrics, TensorBoard/metrics.jsonl, checkpoints)
  reference  the loop most CIFAR repositories run: PIL transforms in DataLoader workers,
             eager fp32, `loss.item()` every step
  KD         a kdlab distillation step (resnet_teacher, T=4, alpha=0.1) against a student
             step plus a teacher forward timed apart: 1.00 means KD costs nothing more
  KD cached  the same step with the teacher's logits from the logit cache (what every run of
             a sweep after the first gets), against the student step alone

Usage:
  python scripts/bench.py [--quick] [--device cpu|cuda] [--models a,b,c] [--batch-size 128]
                          [--images N] [--precision auto|32|bf16] [--channels-last]
                          [--threads N] [--out FILE.md]

raw, kdlab and KD run in kdlab's default settings (precision auto, channels_last off) unless
told otherwise; the reference runs as the usual script does (fp32, contiguous).

--quick runs a few steps per measurement (about 1.5 minutes on 2 CPU cores); the full run
trains on 50,000 images per epoch and is meant for a GPU; --images N sets the epoch size.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from kdlab.config import RunConfig
from kdlab.data import DataBundle, build_data
from kdlab.data.device_loader import DeviceLoader
from kdlab.data.normalize import channel_stats
from kdlab.engine import Stage, Trainer
from kdlab.models import build_model, model_names
from kdlab.objectives import CrossEntropy, Distillation, FrozenTeacher, Objective
from kdlab.optim import build_optimizer
from kdlab.run_logger import RunLogger
from kdlab.execution import autocast, resolve_precision, seed_everything, setup_runtime

TEACHER = "resnet_teacher"
KD_T, KD_ALPHA = 4.0, 0.1
DEFAULT_MODELS = "resnet_teacher,cnn_student,fitnet_student"
TEST_IMAGES = 100  # build_data needs a test split; nothing here evaluates it

Batch = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class Plan:
    """How much each measurement runs. Measurements that are compared are timed in rounds,
    each round timing every one of them once, so drift on a shared machine (other load,
    clock changes) hits them alike; medians are taken over the rounds."""

    train_images: int  # per epoch of the kdlab and reference loops
    block_steps: int  # steps per timed block of the staged-batch measurements
    rounds: int  # timed rounds, after one untimed warm-up round


# --quick: about 1.5 minutes on 2 CPU cores. Its 2-step epochs carry a whole epoch's fixed
# costs (two checkpoint writes, logs: ~80 ms on that CPU); --images N amortises them.
QUICK = Plan(train_images=256, block_steps=2, rounds=3)
FULL = Plan(train_images=50_000, block_steps=10, rounds=3)


@dataclass(frozen=True)
class Measurement:
    images_per_s: float
    peak_mib: float | None  # None where the peak cannot be read

    @property
    def seconds_per_image(self) -> float:
        return 1.0 / self.images_per_s


@dataclass(frozen=True)
class Row:
    """One model's figures; the KD ones are None for the teacher itself."""

    model: str
    raw: Measurement
    kdlab: Measurement
    reference: Measurement
    kd: Measurement | None = None
    kd_cost_ratio: float | None = None  # KD time / (student step + teacher forward) time
    kd_cached: Measurement | None = None  # KD with the teacher's logits from the cache

    @property
    def kd_cached_ratio(self) -> float | None:
        """Cached KD step time / student step time: 1.00 means KD costs a student step."""
        if self.kd_cached is None:
            return None
        return self.kd_cached.seconds_per_image / self.raw.seconds_per_image


@dataclass(frozen=True)
class Bench:
    """What every measurement shares: settings, device, data and the staged batch."""

    cfg: DictConfig
    plan: Plan
    device: torch.device
    data: DataBundle
    batch: Batch  # one normalised training batch already on the device
    reference_loader: DataLoader
    run_root: Path  # throwaway run dirs of the kdlab fits

    @property
    def batch_size(self) -> int:
        return int(self.cfg.trainer.batch_size)

    @property
    def precision(self) -> str:
        """trainer.precision as the Trainer resolves it (auto -> bf16 or 32)."""
        return resolve_precision(self.cfg.trainer.precision, self.device)


def base_parser(description: str, models: str) -> argparse.ArgumentParser:
    """The options every benchmark script takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a few steps per measurement")
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--models", default=models, help="comma-separated model names")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--images", type=int, default=None, help="images per epoch (default: 50,000; --quick 256)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=None, help="also write a markdown table")
    return parser


def parse_with_models(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> argparse.Namespace:
    """Parse, with --models as a checked list of model names."""
    args = parser.parse_args(argv)
    args.models = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = sorted(set(args.models) - set(model_names()))
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}: see `kdlab models`")
    return args


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = base_parser(__doc__.split("\n\n")[0], DEFAULT_MODELS)
    parser.add_argument(
        "--precision", choices=("auto", "32", "bf16"), default="auto", help="kdlab's default: auto"
    )
    parser.add_argument("--channels-last", action="store_true", help="kdlab's default: off")
    return parse_with_models(parser, argv)


def run_config(args: argparse.Namespace, plan: Plan) -> DictConfig:
    """A full kdlab config, so the Trainer runs exactly as `kdlab train` would."""
    overrides = {
        "command": "bench",
        "model": {"arch": TEACHER},  # replaced per model
        "data": {
            "name": "synthetic",
            "train_size": plan.train_images,
            "test_size": TEST_IMAGES,
            "val_split": 0.0,  # no evaluation inside the timed epochs
        },
        "trainer": {
            "device": args.device,
            "batch_size": args.batch_size,
            "precision": args.precision,
            "channels_last": args.channels_last,
            "num_threads": args.threads,
            "progress": "off",
        },
    }
    return OmegaConf.merge(OmegaConf.structured(RunConfig), overrides)


def new_model(name: str, bench: Bench, channels_last: bool) -> nn.Module:
    """A freshly initialised model on the device, so no measurement inherits another's state."""
    seed_everything(int(bench.cfg.seed))
    model = build_model(name, bench.data.num_classes).to(bench.device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def kdlab_model(name: str, bench: Bench) -> nn.Module:
    return new_model(name, bench, bool(bench.cfg.trainer.channels_last))


def kdlab_optimizer(model: nn.Module, bench: Bench) -> torch.optim.Optimizer:
    """kdlab's own optimizer (SGD nesterov, foreach on CPU, fused on CUDA)."""
    return build_optimizer([{"params": list(model.parameters())}], bench.cfg.optim, bench.device)


# --- timing -------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(work: Callable[[], object], device: torch.device) -> float:
    """Wall seconds of `work`, with the device's queued work finished on both sides."""
    sync(device)
    tic = time.perf_counter()
    work()
    sync(device)
    return time.perf_counter() - tic


def reset_peak(device: torch.device) -> float | None:
    """Restart the peak-memory reading; returns the baseline to subtract from the peak (0 on
    CUDA, the current RSS on a CPU), or None where the peak cannot be restarted."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return 0.0
    try:  # Linux: writing 5 to clear_refs restarts the process's peak RSS (VmHWM) at its RSS
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return proc_status_mib("VmRSS")


def proc_status_mib(field: str) -> float | None:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in MiB; None off Linux."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return None
    fields = [line.split() for line in lines if line.startswith(f"{field}:")]
    return int(fields[0][1]) / 1024 if fields else None


def peak_mib(device: torch.device, baseline: float | None) -> float | None:
    """CUDA's peak allocation, or on a CPU the rise of the peak RSS over `baseline`."""
    if baseline is None:
        return None
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = proc_status_mib("VmHWM")
    return None if peak is None else peak - baseline


@dataclass(frozen=True)
class Work:
    """One thing to time: `run` handles `images` images per call."""

    name: str
    run: Callable[[], object]
    images: int


def measure_together(works: Sequence[Work], bench: Bench) -> dict[str, Measurement]:
    """Images/s of each work: one warm-up call each, then rounds timing each once (median);
    peak memory: the largest of its calls' peaks."""
    for work in works:
        work.run()
    seconds: dict[str, list[float]] = {work.name: [] for work in works}
    peaks: dict[str, list[float | None]] = {work.name: [] for work in works}
    for _ in range(bench.plan.rounds):
        for work in works:
            baseline = reset_peak(bench.device)
            seconds[work.name].append(time_call(work.run, bench.device))
            peaks[work.name].append(peak_mib(bench.device, baseline))
    return {
        work.name: Measurement(
            work.images / statistics.median(seconds[work.name]), largest(peaks[work.name])
        )
        for work in works
    }


def largest(peaks: list[float | None]) -> float | None:
    """The largest peak, or None if any call's peak could not be read."""
    known = [peak for peak in peaks if peak is not None]
    return max(known) if len(known) == len(peaks) else None


def block(name: str, step: Callable[[], object], bench: Bench) -> Work:
    """`block_steps` calls of a step on the staged batch, as one work."""

    def run() -> None:
        for _ in range(bench.plan.block_steps):
            step()

    return Work(name, run, bench.plan.block_steps * bench.batch_size)


# --- the measurements ----------------------------------------------------------------------


def training_step(
    model: nn.Module,
    objective: Objective,
    optimizer: torch.optim.Optimizer,
    batch: tuple[Tensor, ...],
    device: torch.device,
    precision: str,
) -> Callable[[], None]:
    """One step as kdlab's engine takes it (autocast forward, backward, step), on a fixed batch
    (x, y[, teacher logits])."""
    model.train()

    def step() -> None:
        with autocast(device, precision):
            out = objective(model, *batch)
        optimizer.zero_grad(set_to_none=True)
        out.losses["loss"].backward()
        optimizer.step()

    return step


def step_work(
    label: str, name: str, objective: Objective, bench: Bench, batch: tuple[Tensor, ...]
) -> Work:
    """A freshly built model's kdlab training step on the staged batch."""
    model = kdlab_model(name, bench)
    optimizer = kdlab_optimizer(model, bench)
    step = training_step(model, objective, optimizer, batch, bench.device, bench.precision)
    return block(label, step, bench)


def kdlab_work(name: str, bench: Bench, closing: ExitStack) -> Work:
    """A real 1-epoch `Trainer.fit`: optimizer set-up, the epoch, its logging and checkpoints."""
    model = kdlab_model(name, bench)
    run_dir = bench.run_root / name
    run_dir.mkdir()
    logger = RunLogger(run_dir)
    closing.callback(logger.close)
    cfg = OmegaConf.merge(bench.cfg, {"model": {"arch": name}})
    trainer = Trainer(cfg, run_dir, bench.data, model, bench.device, logger, show_bars=False)
    stage = Stage(
        name="bench",
        objective=CrossEntropy(),
        param_groups=[{"params": list(model.parameters())}],
        epochs=1,
    )
    return Work("kdlab", lambda: trainer.fit(stage), bench.data.train.num_samples)


def reference_work(name: str, bench: Bench) -> Work:
    """The usual script's epochs: fp32, contiguous, plain SGD, PIL pipeline."""
    model = new_model(name, bench, channels_last=False)
    optim = bench.cfg.optim
    optimizer = torch.optim.SGD(
        model.parameters(), lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay
    )
    loader = bench.reference_loader
    return Work(
        "reference",
        lambda: reference_epoch(model, optimizer, loader, bench.device),
        len(loader) * bench.batch_size,
    )


def teacher_forward_work(teacher: FrozenTeacher, bench: Bench) -> Work:
    """The teacher's share of a KD step: its forward pass under inference mode."""
    x = bench.batch[0]

    def forward() -> None:
        with autocast(bench.device, bench.precision):
            teacher.logits(x)

    return block("teacher", forward, bench)


def bench_model(name: str, bench: Bench, teacher: FrozenTeacher | None) -> Row:
    """One model's figures, all timed in the same rounds; KD ones when a teacher is given."""
    x, y = bench.batch
    with ExitStack() as closing:
        works = [
            step_work("raw", name, CrossEntropy(), bench, bench.batch),
            kdlab_work(name, bench, closing),
            reference_work(name, bench),
        ]
        if teacher is not None:
            distill = Distillation(teacher, T=KD_T, alpha=KD_ALPHA)
            with autocast(bench.device, bench.precision):
                cached = teacher.logits(x)  # what the logit cache hands a step
            works += [
                step_work("kd", name, distill, bench, bench.batch),
                step_work("kd_cached", name, distill, bench, (x, y, cached)),
                teacher_forward_work(teacher, bench),
            ]
        note(f"{name}: {', '.join(w.name for w in works)}")
        m = measure_together(works, bench)
    row = Row(name, m["raw"], m["kdlab"], m["reference"])
    if teacher is None:
        return row
    apart = m["raw"].seconds_per_image + m["teacher"].seconds_per_image
    return replace(
        row,
        kd=m["kd"],
        kd_cost_ratio=m["kd"].seconds_per_image / apart,
        kd_cached=m["kd_cached"],
    )


# --- the reference loop ---------------------------------------------------------------------


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


# --- the report -----------------------------------------------------------------------------

COLUMNS = (
    "model",
    "raw img/s",
    "kdlab img/s",
    "ref img/s",
    "kdlab/raw",
    "kdlab/ref",
    "KD img/s",
    "KD/(S+T)",
    "KDc img/s",
    "KDc/S",
    "peak MiB",
)


def rate(m: Measurement | None) -> str:
    return "-" if m is None else f"{m.images_per_s:,.0f}"


def peak_cell(row: Row) -> str:
    """raw/kdlab/reference/KD peaks in MiB; n/a where they cannot be read."""
    measurements = [row.raw, row.kdlab, row.reference, row.kd]
    peaks = [m.peak_mib for m in measurements if m is not None]
    if any(p is None for p in peaks):
        return "n/a"
    return "/".join(f"{p:.0f}" for p in peaks)


def cells(row: Row) -> list[str]:
    return [
        row.model,
        rate(row.raw),
        rate(row.kdlab),
        rate(row.reference),
        f"{row.kdlab.images_per_s / row.raw.images_per_s:.2f}",
        f"{row.kdlab.images_per_s / row.reference.images_per_s:.2f}x",
        rate(row.kd),
        "-" if row.kd_cost_ratio is None else f"{row.kd_cost_ratio:.2f}",
        rate(row.kd_cached),
        "-"
        if row.kd_cached is None
        else f"{row.raw.images_per_s / row.kd_cached.images_per_s:.2f}",
        peak_cell(row),
    ]


def pipe_row(parts: Sequence[str]) -> str:
    return "| " + " | ".join(parts) + " |"


def text_table(columns: Sequence[str], rows: list[list[str]]) -> str:
    """Fixed-width, names left and figures right, ruled above and below (airbench style)."""
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]

    def line(parts: Sequence[str]) -> str:
        name, *figures = parts
        aligned = [p.rjust(w) for p, w in zip(figures, widths[1:], strict=True)]
        return pipe_row([name.ljust(widths[0]), *aligned])

    rule = "-" * len(line(columns))
    return "\n".join([rule, line(columns), rule, *map(line, rows), rule])


def markdown_table(columns: Sequence[str], rows: list[list[str]]) -> str:
    align = ["---", *["---:"] * (len(columns) - 1)]
    return "\n".join([pipe_row(columns), pipe_row(align), *map(pipe_row, rows)])


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    name = models[0] if models else platform.processor() or platform.machine()
    return f"{name} ({os.cpu_count()} logical cores)"


def memory_note(device: torch.device) -> str:
    if device.type == "cuda":
        return "peak MiB: torch.cuda.max_memory_allocated per measurement, raw/kdlab/reference/KD"
    kib = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * kib / 2**20
    return (
        "peak MiB: how far the process's RSS rose during each measurement above its RSS before "
        "it, raw/kdlab/reference/KD (VmHWM after a reset; DataLoader workers not counted); the "
        f"whole run peaked at {rss:,.0f} MiB"
    )


def header_lines(bench: Bench, quick: bool, seconds: float) -> list[str]:
    t, plan = bench.cfg.trainer, bench.plan
    workers = bench.reference_loader.num_workers
    return [
        f"device: {device_name(bench.device)}",
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, precision "
        f"{t.precision} ({bench.precision}), "
        f"channels_last {'on' if t.channels_last else 'off'}, batch size {t.batch_size}, "
        f"{bench.data.train.num_samples:,} images per epoch{' (--quick)' if quick else ''}",
        f"every figure: median of {plan.rounds} rounds after a warm-up round; a round times "
        "each measurement of a model once, in turn (raw, kdlab, reference, KD, KD cached, "
        "teacher forward), so drift on the machine hits them alike",
        f"raw, KD: blocks of {plan.block_steps} step(s) on a staged batch; KD/(S+T) = KD step "
        "time / (student step + teacher forward); KDc/S = KD step on cached teacher logits / "
        "student step",
        "kdlab = a whole 1-epoch Trainer.fit (data, metrics, TensorBoard, checkpoints); "
        f"reference = PIL crop/flip in {workers} DataLoader workers, eager fp32, loss.item() "
        "each step",
        memory_note(bench.device),
        f"total {seconds:.0f} s",
    ]


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def chosen_plan(args: argparse.Namespace) -> Plan:
    plan = QUICK if args.quick else FULL
    return plan if args.images is None else replace(plan, train_images=args.images)


def open_bench(args: argparse.Namespace, plan: Plan, run_root: Path) -> Bench:
    """Settings, device, synthetic data and the staged batch every measurement shares."""
    cfg = run_config(args, plan)
    device = setup_runtime(cfg.trainer, cfg.seed)
    note(f"generating {plan.train_images:,} synthetic images")
    data = build_data(
        cfg.data,
        batch_size=args.batch_size,
        eval_batch_size=cfg.trainer.eval_batch_size,
        device=device,
        seed=cfg.seed,
        channels_last=args.channels_last,
    )
    assert isinstance(data.train, DeviceLoader)  # synthetic data is always device-resident
    return Bench(
        cfg=cfg,
        plan=plan,
        device=device,
        data=data,
        batch=next(iter(data.train)),
        reference_loader=reference_loader(data.train, args.batch_size, device),
        run_root=run_root,
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kdlab-bench-") as tmp:
        bench = open_bench(args, chosen_plan(args), Path(tmp))
        teacher = None
        if any(name != TEACHER for name in args.models):
            teacher = FrozenTeacher(kdlab_model(TEACHER, bench))
        rows = [
            bench_model(name, bench, None if name == TEACHER else teacher) for name in args.models
        ]
    header = header_lines(bench, args.quick, time.perf_counter() - started)
    table = [cells(row) for row in rows]
    report(header, COLUMNS, table, args.out)


def report(header: list[str], columns: Sequence[str], table: list[list[str]], out: Path | None):
    """Print the header and the fixed-width table; with `out`, also write them as markdown."""
    print("\n".join([*header, text_table(columns, table)]))
    if out is not None:
        bullets = [f"- {line}" for line in header]
        out.write_text("\n".join([*bullets, "", markdown_table(columns, table), ""]))
        note(f"wrote {out}")


if __name__ == "__main__":
    main()

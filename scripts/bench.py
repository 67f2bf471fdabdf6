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
                          [--threads N] [--out FILE.md] [--only loader]

--only loader measures the data path alone instead (benchlib/loader.py): kdlab's streamed
image folder at 224 px against its in-memory path and a torchvision ImageFolder + PIL +
DataLoader loop, on a generated folder of JPEGs (--images N of them, default 512).

raw, kdlab and KD run in kdlab's default settings (precision auto, channels_last off) unless
told otherwise; the reference runs as the usual script does (fp32, contiguous).

--quick runs a few steps per measurement (about 1.5 minutes on 2 CPU cores); the full run
trains on 50,000 images per epoch and is meant for a GPU; --images N sets the epoch size.
The timing harness and the measurements are in scripts/benchlib/ (shared with bench_means.py).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Sequence

import torch

from benchlib.loader import loader_rows
from benchlib.measures import Row, bench_model
from benchlib.report import device_line, report, settings_line
from benchlib.timing import Measurement, base_parser, chosen_plan, parse_with_models
from benchlib.workbench import TEACHER, Bench, kdlab_model, opened_bench
from kdlab.methods.teacher import FrozenTeacher

DEFAULT_MODELS = "resnet_teacher,cnn_student,fitnet_student"

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


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = base_parser(__doc__.split("\n\n")[0], DEFAULT_MODELS)
    parser.add_argument(
        "--precision", choices=("auto", "32", "bf16"), default="auto", help="kdlab's default: auto"
    )
    parser.add_argument("--channels-last", action="store_true", help="kdlab's default: off")
    parser.add_argument("--only", choices=("loader",), help="just this measurement")
    return parse_with_models(parser, argv)


def rate(m: Measurement | None) -> str:
    return "-" if m is None else f"{m.images_per_s:,.0f}"


def ratio(value: float | None, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.2f}{suffix}"


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
        ratio(row.kdlab.images_per_s / row.raw.images_per_s),
        ratio(row.kdlab.images_per_s / row.reference.images_per_s, "x"),
        rate(row.kd),
        ratio(row.kd_cost_ratio),
        rate(row.kd_cached),
        ratio(row.kd_cached_ratio),
        peak_cell(row),
    ]


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


def header_lines(bench: Bench, quick: bool) -> list[str]:
    t, plan = bench.cfg.trainer, bench.plan
    workers = bench.reference_loader.num_workers
    settings = (
        f"precision {t.precision} ({bench.precision}), "
        f"channels_last {'on' if t.channels_last else 'off'}, "
    )
    images = f"{bench.data.train.num_samples:,} images per epoch"
    return [
        device_line(bench.device),
        settings_line(settings, t.batch_size, images, quick),
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
    ]


def loader_main(args: argparse.Namespace, started: float) -> None:
    """--only loader: the data paths of an image folder, side by side."""
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rows, settings = loader_rows(args, device)
    header = [
        device_line(device),
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {settings}",
        "every figure: median of the rounds after a warm-up round; a round times each path "
        "once, in turn, so drift on the machine hits them alike",
    ]
    report(header, time.perf_counter() - started, ("path", "img/s", "vs ref"), rows, args.out)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    if args.only == "loader":
        loader_main(args, started)
        return
    with opened_bench(args, chosen_plan(args), "kdlab-bench-") as bench:
        teacher = None
        if any(name != TEACHER for name in args.models):
            teacher = FrozenTeacher(kdlab_model(TEACHER, bench))
        rows = [
            bench_model(name, bench, None if name == TEACHER else teacher) for name in args.models
        ]
    header = header_lines(bench, args.quick)
    table = [cells(row) for row in rows]
    report(header, time.perf_counter() - started, COLUMNS, table, args.out)


if __name__ == "__main__":
    main()

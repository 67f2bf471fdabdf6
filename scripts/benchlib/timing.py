"""The timing harness: interleaved rounds, medians, peak memory and the shared options.

Measurements that are compared are timed in rounds, each round timing every one of them once,
so drift on a shared machine (other load, clock changes) hits them alike; medians are taken
over the rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from kdlab.models import model_names


@dataclass(frozen=True)
class Plan:
    """How much each measurement runs."""

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
class Work:
    """One thing to time: `run` handles `images` images per call."""

    name: str
    run: Callable[[], object]
    images: int


# --- options ---------------------------------------------------------------------------------


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


def chosen_plan(args: argparse.Namespace) -> Plan:
    plan = QUICK if args.quick else FULL
    return plan if args.images is None else replace(plan, train_images=args.images)


def note(message: str) -> None:
    """Progress on stderr, so stdout holds only the report."""
    print(message, file=sys.stderr, flush=True)


# --- timing ----------------------------------------------------------------------------------


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


def measure_together(
    works: Sequence[Work], rounds: int, device: torch.device
) -> dict[str, Measurement]:
    """Images/s of each work: one warm-up call each, then rounds timing each once (median);
    peak memory: the largest of its calls' peaks."""
    for work in works:
        work.run()
    seconds: dict[str, list[float]] = {work.name: [] for work in works}
    peaks: dict[str, list[float | None]] = {work.name: [] for work in works}
    for _ in range(rounds):
        for work in works:
            baseline = reset_peak(device)
            seconds[work.name].append(time_call(work.run, device))
            peaks[work.name].append(peak_mib(device, baseline))
    return {
        work.name: Measurement(
            work.images / statistics.median(seconds[work.name]), largest(peaks[work.name])
        )
        for work in works
    }


def repeated(name: str, step: Callable[[], object], steps: int, images_per_step: int) -> Work:
    """`steps` calls of a step, as one work."""

    def run() -> None:
        for _ in range(steps):
            step()

    return Work(name, run, steps * images_per_step)


# --- peak memory -----------------------------------------------------------------------------


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


def largest(peaks: list[float | None]) -> float | None:
    """The largest peak, or None if any call's peak could not be read."""
    known = [peak for peak in peaks if peak is not None]
    return max(known) if len(known) == len(peaks) else None

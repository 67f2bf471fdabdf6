"""What a command pays before and after its training, measured side by side in one process.

Each pair times kdlab's way and the way it replaced, in interleaved rounds (medians of CPU
seconds, one torch thread), on what every command of a run does once:

  compose   one composition of `kdlab distill loss=kd` (the pre-flight and Hydra each make
            one): Hydra's repository copies with the ConfigStore shared (kdlab) vs deep-copied
            with every stored schema (Hydra's default)
  stats     the per-channel mean and std of the synthetic train set (9,900 images): from each
            channel's histogram (kdlab) vs summing float64 blocks (the reference below)
  synthetic the synthetic set of a run: a copy of the set generated once per process (kdlab)
            vs generating it again

Usage:
  python scripts/bench_startup.py [--rounds 5] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from hydra.core.config_store import ConfigStore

from benchlib.report import markdown_table, text_table
from kdlab.data import synthetic
from kdlab.data.normalize import channel_stats
from kdlab.runs import config
from kdlab.runs.config import register_configs
from kdlab.runs.preflight import compose_config


def float_sum_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """The reference: per-channel mean and std from float64 sums of the pixels, in chunks."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    for start in range(0, images.shape[0], chunk):
        block = images[start : start + chunk].transpose(0, 1).flatten(1).double()
        total += block.sum(1)
        total_sq += block.square().sum(1)
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(0).sqrt()
    return (mean / 255).tolist(), (std / 255).clamp_min(1e-3).tolist()


def copied_store(store: ConfigStore, memo: dict[int, Any]) -> ConfigStore:
    """What Python's deepcopy does to the store by itself: every stored schema copied."""
    copy_ = ConfigStore.__new__(ConfigStore)
    copy_.repo = copy.deepcopy(store.repo, memo)
    return copy_


def compose(share_store: bool) -> Callable[[], object]:
    """One composition, the store shared (kdlab) or copied with Hydra's repository."""

    def run() -> object:
        sharing = config._the_store_itself
        config._the_store_itself = sharing if share_store else copied_store  # type: ignore
        try:
            return compose_config("distill", ["loss=kd"])
        finally:
            config._the_store_itself = sharing
            register_configs()

    return run


def cpu_seconds(work: Callable[[], object]) -> float:
    start = time.process_time()
    work()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, help="also write the table as Markdown here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    register_configs()
    images = synthetic.load(synthetic.SyntheticConfig(name="synthetic")).train.images
    assert channel_stats(images) == float_sum_stats(images)  # the same figures, bit for bit
    pairs = {
        "compose": (compose(True), compose(False)),
        "stats": (lambda: channel_stats(images), lambda: float_sum_stats(images)),
        "synthetic": (
            lambda: synthetic.load(synthetic.SyntheticConfig(name="synthetic")),
            lambda: synthetic.generate(synthetic.DEFAULT_TRAIN_SIZE, synthetic.TRAIN_STREAM),
        ),
    }
    times: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in pairs}
    for _ in range(args.rounds + 1):  # the first round warms up, untimed
        for name, (kdlab_way, old_way) in pairs.items():
            times[name][0].append(cpu_seconds(kdlab_way))
            times[name][1].append(cpu_seconds(old_way))
    rows = []
    for name, (ours, old) in times.items():
        a, b = statistics.median(ours[1:]), statistics.median(old[1:])
        rows.append([name, f"{a * 1000:.1f}", f"{b * 1000:.1f}", f"{b / a:.1f}x"])
    columns = ("work", "kdlab ms (CPU)", "replaced ms (CPU)", "ratio")
    print(f"median of {args.rounds} interleaved rounds, 1 torch thread")
    print(text_table(columns, rows))
    if args.out:
        args.out.write_text(markdown_table(columns, rows) + "\n")


if __name__ == "__main__":
    main()

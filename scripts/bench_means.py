"""What each of kdlab's speed means buys, measured side by side in one process.

Each group starts from what a plain PyTorch script does and adds one means at a time, on
the same model, batch size and staged synthetic batch (see scripts/bench.py):

  step      one training step: plain (eager fp32, contiguous, a per-parameter SGD loop),
            + foreach/fused SGD (kdlab's optimizer), + channels_last, + bf16 autocast,
            + torch.compile of the whole step (with --compile; slow to compile on a CPU)
  data      producing one epoch of augmented, normalised batches without a model: PIL
            crop/flip in DataLoader workers vs kdlab's device-resident uint8 batches
  teacher   the teacher's forward pass: autograd on (a script that forgets no_grad),
            no_grad, inference_mode (kdlab)

Usage:
  python scripts/bench_means.py [--quick] [--device cpu|cuda] [--models a,b] [--compile]
                                [--batch-size 128] [--threads N] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from bench import (
    TEACHER,
    Bench,
    Measurement,
    Work,
    base_parser,
    block,
    chosen_plan,
    device_name,
    kdlab_optimizer,
    measure_together,
    new_model,
    note,
    open_bench,
    parse_with_models,
    report,
    training_step,
)
from kdlab.compiling import CompiledOrEager
from kdlab.engine import StepModule
from kdlab.objectives import CrossEntropy

COLUMNS = ("means", "model", "img/s", "vs first of group")
Row = tuple[str, str, Measurement]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = base_parser(__doc__.split("\n\n")[0], "resnet_teacher,cnn_student")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    args = parse_with_models(parser, argv)
    args.precision, args.channels_last = "32", False  # the plain script's settings
    return args


def staged(bench: Bench, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = bench.batch
    layout = torch.channels_last if channels_last else torch.contiguous_format
    return x.contiguous(memory_format=layout), y


def plain_sgd(model: nn.Module, bench: Bench) -> torch.optim.Optimizer:
    """SGD as most scripts build it: one group, the per-parameter loop (no foreach)."""
    o = bench.cfg.optim
    return torch.optim.SGD(
        model.parameters(),
        lr=o.lr,
        momentum=o.momentum,
        nesterov=o.nesterov,
        weight_decay=o.weight_decay,
        foreach=False,
    )


def step_rows(name: str, bench: Bench, with_compile: bool) -> list[Row]:
    """plain, then each means added on top of the previous ones."""
    settings = [
        ("step: plain (fp32, contiguous, SGD loop)", False, "32", False, False),
        ("step: + foreach/fused SGD", False, "32", True, False),
        ("step: + channels_last", True, "32", True, False),
        ("step: + bf16 autocast", True, "bf16", True, False),
    ]
    if with_compile:
        settings.append(("step: fp32 + channels_last + compile", True, "32", True, True))
    works = []
    for label, channels_last, precision, kdlab_optim, compiled in settings:
        model = new_model(name, bench, channels_last)
        optimizer = kdlab_optimizer(model, bench) if kdlab_optim else plain_sgd(model, bench)
        batch = staged(bench, channels_last)
        if compiled:
            step_module = CompiledOrEager(StepModule(model, CrossEntropy()))
            step = compiled_step(step_module, optimizer, batch)
        else:
            step = training_step(model, CrossEntropy(), optimizer, batch, bench.device, precision)
        works.append(block(label, step, bench))
    return rows_of(works, name, bench)


def rows_of(works: list[Work], model: str, bench: Bench) -> list[Row]:
    note(f"{model}: {len(works)} measurements")
    measured = measure_together(works, bench)
    return [(work.name, model, measured[work.name]) for work in works]


def compiled_step(
    step_module: nn.Module, optimizer: torch.optim.Optimizer, batch: tuple
) -> Callable[[], None]:
    def step() -> None:
        out = step_module(*batch)
        optimizer.zero_grad(set_to_none=True)
        out.losses["loss"].backward()
        optimizer.step()

    return step


def data_rows(bench: Bench) -> list[Row]:
    """One epoch of batches, no model: the reference pipeline against kdlab's."""
    train = bench.data.train
    loader = bench.reference_loader
    works = [
        Work(
            "data: PIL crop/flip, DataLoader workers",
            lambda: sum(x.shape[0] for x, _ in loader),
            len(loader) * bench.batch_size,
        ),
        Work(
            "data: device-resident uint8, batched crop/flip",
            lambda: sum(x.shape[0] for x, _ in train),
            train.num_samples,
        ),
    ]
    return rows_of(works, "-", bench)


def teacher_rows(bench: Bench) -> list[Row]:
    """The teacher's forward pass with autograd recording, under no_grad, under inference."""
    model = new_model(TEACHER, bench, channels_last=False).eval().requires_grad_(True)
    x, _ = staged(bench, channels_last=False)
    works = [
        block("teacher forward: autograd on", lambda: model(x), bench),
        block("teacher forward: no_grad", lambda: no_grad_forward(model, x), bench),
        block(
            "teacher forward: inference_mode (kdlab)", lambda: inference_forward(model, x), bench
        ),
    ]
    return rows_of(works, TEACHER, bench)


def no_grad_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def inference_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(x)


def table(groups: list[list[Row]]) -> list[list[str]]:
    """Rows with their speed-up over the first row of their group."""
    out = []
    for group in groups:
        first = group[0][2].images_per_s
        for label, model, m in group:
            out.append([label, model, f"{m.images_per_s:,.0f}", f"{m.images_per_s / first:.2f}x"])
    return out


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    plan = chosen_plan(args)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kdlab-means-") as tmp:
        bench = open_bench(args, plan, Path(tmp))
        groups = [step_rows(name, bench, args.compile) for name in args.models]
        groups += [data_rows(bench), teacher_rows(bench)]
    header = [
        f"device: {device_name(bench.device)}",
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch size "
        f"{args.batch_size}, {bench.data.train.num_samples:,} images per data epoch"
        f"{' (--quick)' if args.quick else ''}",
        f"median of {plan.rounds} rounds after a warm-up round; a round times every "
        f"measurement of a group once, in turn; step/teacher: blocks of {plan.block_steps} "
        "step(s) on a staged batch",
        f"total {time.perf_counter() - started:.0f} s",
    ]
    report(header, COLUMNS, table(groups), args.out)


if __name__ == "__main__":
    main()

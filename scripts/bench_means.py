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
import time
from collections.abc import Sequence
from functools import partial

import torch
from torch import nn

from benchlib.measures import optimizer_step, training_step
from benchlib.report import device_line, report, settings_line
from benchlib.timing import Measurement, Work, base_parser, chosen_plan, note, parse_with_models
from benchlib.workbench import TEACHER, Bench, kdlab_optimizer, new_model, opened_bench
from kdlab.engine.compiling import CompiledOrEager
from kdlab.engine.objective import CrossEntropy
from kdlab.engine.stage import StepModule

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
            step = optimizer_step(partial(step_module, *batch), optimizer)
        else:
            step = training_step(model, CrossEntropy(), optimizer, batch, bench.device, precision)
        works.append(bench.block(label, step))
    return rows_of(works, name, bench)


def rows_of(works: list[Work], model: str, bench: Bench) -> list[Row]:
    note(f"{model}: {len(works)} measurements")
    measured = bench.measure(works)
    return [(work.name, model, measured[work.name]) for work in works]


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
        bench.block("teacher forward: autograd on", lambda: model(x)),
        bench.block("teacher forward: no_grad", lambda: no_grad_forward(model, x)),
        bench.block("teacher forward: inference_mode (kdlab)", lambda: inference_forward(model, x)),
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


def header_lines(bench: Bench, quick: bool) -> list[str]:
    plan = bench.plan
    images = f"{bench.data.train.num_samples:,} images per data epoch"
    return [
        device_line(bench.device),
        settings_line("", bench.batch_size, images, quick),
        f"median of {plan.rounds} rounds after a warm-up round; a round times every "
        f"measurement of a group once, in turn; step/teacher: blocks of {plan.block_steps} "
        "step(s) on a staged batch",
    ]


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    with opened_bench(args, chosen_plan(args), "kdlab-means-") as bench:
        groups = [step_rows(name, bench, args.compile) for name in args.models]
        groups += [data_rows(bench), teacher_rows(bench)]
    header = header_lines(bench, args.quick)
    report(header, time.perf_counter() - started, COLUMNS, table(groups), args.out)


if __name__ == "__main__":
    main()

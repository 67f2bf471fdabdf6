"""The training step of every distillation method against the KD step, side by side.

One student and one teacher (default cnn_student <- resnet_teacher, note 1's pair), one
staged synthetic batch; each method's step is timed as kdlab's engine takes it (autocast
forward of both models with the method's taps, backward, optimizer step over the student
and the method's own modules), in the same interleaved rounds as online KD (the teacher
run every step) and the plain cross-entropy step of the student alone:

  img/s      training images per second of the method's step
  vs KD      the method's step time / the online KD step's: 1.00 = as cheap as KD; the
             feature methods read their taps from forward hooks in the same two forwards
  vs CE      the step time / the student's cross-entropy step (the teacher's cost shows)
  +params    the method's own trained modules (regressors, embeddings) beside the student

Usage:
  python scripts/bench_methods.py [--quick] [--device cpu|cuda] [--models STUDENT,TEACHER]
                                  [--methods kd,dkd,...] [--batch-size 128] [--threads N]
                                  [--out FILE.md]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from benchlib.core import method_objective
from benchlib.measures import training_step
from benchlib.report import device_line, report, settings_line
from benchlib.timing import Measurement, Work, base_parser, chosen_plan, note, parse_with_models
from benchlib.workbench import Bench, kdlab_model, opened_bench
from kdlab.engine.optim import build_optimizer
from kdlab.methods.registry import METHODS
from kdlab.methods.teacher import FrozenTeacher

COLUMNS = ("method", "taps", "img/s", "vs KD", "vs CE", "+params")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = base_parser(__doc__.split("\n\n")[0], "cnn_student,resnet_teacher")
    parser.add_argument(
        "--methods", default=",".join(METHODS), help="comma-separated loss= names (default: all)"
    )
    args = parse_with_models(parser, argv)
    if len(args.models) != 2:
        parser.error("--models takes STUDENT,TEACHER")
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}: choose from {', '.join(METHODS)}")
    if "kd" not in args.methods:
        args.methods.insert(0, "kd")  # every ratio is against it
    args.precision, args.channels_last = "auto", False  # kdlab's defaults
    return args


def method_work(name: str, student: str, teacher: FrozenTeacher, bench: Bench) -> tuple[Work, int]:
    """A fresh student's training step with `loss=NAME`, its modules trained beside it, and
    how many parameters those modules have."""
    model = kdlab_model(student, bench)
    objective = method_objective(name, teacher, model, int(bench.batch[0].shape[-1]))
    params = [*model.parameters(), *objective.parameters()]
    optimizer = build_optimizer([{"params": params}], bench.cfg.optim, bench.device)
    step = training_step(model, objective, optimizer, bench.batch, bench.device, bench.precision)
    return bench.block(name, step), sum(p.numel() for p in objective.parameters())


def cells(name: str, m: dict[str, Measurement], extra: int) -> list[str]:
    speed = m[name].images_per_s
    return [
        name,
        METHODS[name].taps,
        f"{speed:,.0f}",
        f"{m['kd'].images_per_s / speed:.2f}",
        f"{m['ce'].images_per_s / speed:.2f}",
        f"{extra:,}" if extra else "-",
    ]


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    student, teacher_name = args.models
    with opened_bench(args, chosen_plan(args), "kdlab-bench-methods-") as bench:
        teacher = FrozenTeacher(kdlab_model(teacher_name, bench))
        names = list(dict.fromkeys(["ce", *args.methods]))
        works = {name: method_work(name, student, teacher, bench) for name in names}
        note(f"{student} <- {teacher_name}: {', '.join(names)}")
        m = bench.measure([work for work, _ in works.values()])
    header = [
        device_line(bench.device),
        settings_line(
            f"precision {bench.precision}, ", bench.batch_size, "one staged batch", args.quick
        ),
        f"student {student}, teacher {teacher_name}; every figure: median of "
        f"{bench.plan.rounds} rounds after a warm-up round, each round timing every method's "
        f"step once in turn ({bench.plan.block_steps} steps on one staged batch)",
        "vs KD / vs CE: step time over the online KD step's / the student's CE step's "
        "(>1 = slower); ce is the baseline without a teacher",
    ]
    table = [cells(name, m, extra) for name, (_, extra) in works.items()]
    report(header, time.perf_counter() - started, COLUMNS, table, args.out)


if __name__ == "__main__":
    main()

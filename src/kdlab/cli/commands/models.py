"""`kdlab models`: every model with its parameter counts and named feature points."""

from __future__ import annotations

from collections.abc import Sequence

from kdlab.errors import OneLineParser
from kdlab.models import describe_models


def _millions(params: float | None, digits: int = 3) -> str:
    return f"{params / 1e6:.{digits}f}M" if params is not None else "-"


def main(argv: Sequence[str]) -> None:
    parser = OneLineParser(
        prog="kdlab models",
        description="List the models (model=NAME), their parameter counts at 10 and 100 "
        "classes beside the references' published size at 100 (RepDistiller's CIFAR-100 zoo), "
        "and their feature points (fitnet.hint_layer / fitnet.guided_layer; * = default).",
    )
    parser.parse_args(list(argv))
    infos = describe_models()
    width = max(len(info.name) for info in infos)
    print(f"{'model':<{width}}  {'params@10':>9}  {'params@100':>10}  {'published':>9}  "
          "feature points")  # fmt: skip
    for info in infos:
        published = _millions(info.published * 1e6 if info.published else None, 2)
        points = " ".join(
            f"{p}*" if p == info.default_feature_point else p for p in info.feature_points
        )
        note = f"  ({info.notes})" if info.notes else ""
        print(
            f"{info.name:<{width}}  {_millions(info.params):>9}  "
            f"{_millions(info.params_100):>10}  {published:>9}  {points}{note}"
        )

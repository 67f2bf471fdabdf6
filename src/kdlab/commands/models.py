"""`kdlab models`: every model with its parameter count and named feature points."""

from __future__ import annotations

from collections.abc import Sequence

from kdlab.errors import OneLineParser
from kdlab.models import describe_models


def main(argv: Sequence[str]) -> None:
    parser = OneLineParser(
        prog="kdlab models",
        description="List the models (model=NAME), their parameter counts at 10 classes and "
        "their feature points (fitnet.hint_layer / fitnet.guided_layer; * = default).",
    )
    parser.parse_args(list(argv))
    infos = describe_models()
    width = max(len(info.name) for info in infos)
    print(f"{'model':<{width}}  {'params':>9}  feature points")
    for info in infos:
        params = f"{info.params / 1e6:.3f}M" if info.params is not None else "-"
        points = " ".join(
            f"{p}*" if p == info.default_feature_point else p for p in info.feature_points
        )
        note = f"  ({info.notes})" if info.notes else ""
        print(f"{info.name:<{width}}  {params:>9}  {points}{note}")

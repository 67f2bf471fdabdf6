"""`kdlab predict RUN IMAGES...`: the top-k classes of image files by a run's selected model,
each image preprocessed as the run's training images were."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kdlab.errors import OneLineParser
from kdlab.paths import check_output, selected_checkpoint, shown_path, write_text_atomic

if TYPE_CHECKING:
    from kdlab.deploy import Prediction


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog="kdlab predict",
        description="Classify image files with a finished run's selected model (its best.pt): "
        "each image is resized and normalised as the run's own images were. Prints the top-k "
        "classes and probabilities per image, or writes them to a CSV file.",
    )
    parser.add_argument("run", metavar="RUN", help="a run dir (its best.pt) or a .pt checkpoint")
    parser.add_argument(
        "images", nargs="+", metavar="IMAGES", help="image files, or folders searched recursively"
    )
    parser.add_argument("--top-k", type=int, default=5, help="classes per image (default 5)")
    parser.add_argument(
        "--csv",
        type=Path,
        metavar="FILE",
        help="write image,rank,class,probability rows here instead of printing them",
    )
    parser.add_argument(
        "--allow-modified",
        action="store_true",
        help="use a checkpoint whose bytes differ from its record (best.pt.json)",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing --csv file")
    parser.add_argument(
        "--device", default="auto", help="auto (cuda > mps > cpu, the default), cpu, cuda, ..."
    )
    return parser


def csv_text(predictions: Sequence[Prediction]) -> str:
    """One row per image and rank: easy to filter and pivot."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", "rank", "class", "probability"])
    for prediction in predictions:
        for rank, (name, prob) in enumerate(prediction.top, start=1):
            writer.writerow([shown_path(prediction.image), rank, name, f"{prob:.6f}"])
    return buffer.getvalue()


def main(argv: Sequence[str]) -> None:
    args = build_parser().parse_args(list(argv))
    selected_checkpoint(args.run)  # what the argv alone shows is refused before torch's import
    if args.csv is not None:
        check_output(args.csv, force=args.force, option="--csv")

    from kdlab.deploy import image_files, load_selected, predict
    from kdlab.engine.execution import pick_device

    files = image_files(args.images)
    selected = load_selected(args.run, args.allow_modified)
    predictions = predict(selected, files, args.top_k, pick_device(args.device))
    if args.csv is None:
        width = max(len(shown_path(p.image)) for p in predictions)
        for p in predictions:
            top = "  ".join(f"{name} {prob:.1%}" for name, prob in p.top)
            print(f"{shown_path(p.image):<{width}}  {top}")
        return
    write_text_atomic(args.csv, csv_text(predictions), "--csv")
    top = len(predictions[0].top)
    print(f"wrote the top {top} classes of {len(predictions)} image(s) to {shown_path(args.csv)}")

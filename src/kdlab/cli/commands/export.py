"""`kdlab export RUN --format onnx|torchscript|safetensors`: a run's selected model as a file
for other runtimes, with its preprocessing and class names as metadata, checked against
PyTorch before it is kept."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from kdlab.errors import OneLineParser
from kdlab.paths import check_output, selected_checkpoint, sidecar_of

EXIT_MISMATCH = 1  # the export ran but is not faithful (bad input stays exit code 2)
# kdlab.deploy.FORMATS' names (a test keeps them equal): the parser refuses any other before
# torch is imported.
FORMAT_NAMES = ("onnx", "torchscript", "safetensors")


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog="kdlab export",
        description="Write a finished run's selected model (its best.pt) in eval mode as ONNX, "
        "TorchScript or safetensors, with the input size, channels, normalisation and class "
        "names in the file's metadata and in a sidecar <out>.json; the file is loaded back by "
        "its own runtime and compared with PyTorch on a batch, and kept only if they agree.",
    )
    parser.add_argument("run", metavar="RUN", help="a run dir (its best.pt) or a .pt checkpoint")
    parser.add_argument(
        "--format",
        choices=FORMAT_NAMES,
        default="onnx",
        help="onnx (needs pip install 'kdlab[onnx]'), torchscript or safetensors (default onnx)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="where to write (default: beside the checkpoint, e.g. RUN/checkpoints/best.onnx)",
    )
    parser.add_argument(
        "--allow-modified",
        action="store_true",
        help="use a checkpoint whose bytes differ from its record (best.pt.json)",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace an existing --out file (and its .json)"
    )
    return parser


def main(argv: Sequence[str]) -> None:
    args = build_parser().parse_args(list(argv))
    selected_checkpoint(args.run)  # what the argv alone shows is refused before torch's import
    if args.out is not None:
        check_outputs(args.out, args.force)

    from kdlab.deploy import FORMATS, ExportMismatch, default_output, export_model, load_selected
    from kdlab.deploy.export import CHECK_IMAGES

    fmt = FORMATS[args.format]
    fmt.check_available()  # before the checkpoint is read: the fix comes in a second
    selected = load_selected(args.run, args.allow_modified)
    out = args.out
    if out is None:
        out = default_output(selected, fmt)
        check_outputs(out, args.force)
    p = selected.preprocessing
    print(
        f"exporting {selected.checkpoint} ({selected.metadata()['model']} on {selected.state.data}"
        f", epoch {selected.state.epoch}) as {fmt.name}\n"
        f"  input: {p.channels}x{p.image_size}x{p.image_size}, mean {_rounded(p.mean)}, std "
        f"{_rounded(p.std)}; classes: {', '.join(selected.class_names)}"
    )
    try:
        result = export_model(selected, fmt, out)
    except ExportMismatch as error:
        print(f"kdlab: error: {error}", file=sys.stderr)
        raise SystemExit(EXIT_MISMATCH) from None
    print(
        f"  check: {fmt.runtime} vs PyTorch on {CHECK_IMAGES} images: largest absolute "
        f"difference {result.max_abs_diff:.2e} (tolerance {result.tolerance:.1e})\n"
        f"wrote:\n  {result.path}\n  {result.sidecar}"
    )


def check_outputs(out: Path, force: bool) -> None:
    """The exported file and its sidecar: neither a run's record nor, without --force, a file."""
    for path in (out, sidecar_of(out)):
        check_output(path, force=force, option="--out")


def _rounded(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.4f}" for v in values) + "]"

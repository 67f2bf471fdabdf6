"""The bad-input catalogue's cases of `kdlab export` and `kdlab predict`: each refused in one
line (exit code 2) before anything is written. A plain table over the catalogue's Workspace
(its finished `teacher` run, its `empty` dir, its `broken` image folder), kept apart so the
catalogue module stays the size of one job."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

# (the input as shown, its argv from the Workspace, what the line must say)
DEPLOY: list[tuple[str, Callable[[Any], list[str]], tuple[str, ...]]] = [
    (
        "`kdlab export RUN --format tflite`",
        lambda ws: ["export", str(ws.teacher), "--format", "tflite"],
        ("invalid choice: 'tflite'", "'onnx', 'torchscript', 'safetensors'"),
    ),
    (
        "`kdlab export` a run dir without a finished checkpoint",
        lambda ws: ["export", str(ws.empty)],
        ("has no finished checkpoint (no checkpoints/best.pt", "or a .pt file"),
    ),
    (
        "`kdlab export MISSING_DIR`",
        lambda ws: ["export", str(ws.root / "missing"), "--format", "torchscript"],
        (f"no run dir or checkpoint at {os.sep}", "give a run dir"),
    ),
    (
        "`kdlab predict RUN` an image that cannot be read",
        lambda ws: ["predict", str(ws.teacher), str(ws.broken / "train" / "b" / "5.png")],
        ("cannot read image", f"broken{os.sep}train{os.sep}b{os.sep}5.png", "fix or delete"),
    ),
]

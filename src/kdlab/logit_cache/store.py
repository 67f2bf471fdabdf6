"""Teacher logits per (training image, view) on disk, shared by every run that can use them.

Layout of one store (a directory named by the hash of everything the logits depend on):

    meta.json     what the logits are of: teacher, images, normalisation, views, precision...
    logits.npy    (images * views, classes) in the teacher's own output dtype (bf16 as raw bits)
    filled.npy    (images * views,) uint8: 1 where the row holds the teacher's logits

Both arrays are memory-mapped and written in place, so runs of a sweep (even in parallel
processes) add to one store without rewriting it. A row is written, then flushed, then
flagged, so a kill at any moment leaves flags only on rows that are whole. The store is
created complete in a temp directory and renamed into place: two runs creating it at once
both end up using the one that won the rename. Rows are flushed once per epoch, not per
write.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = 1

# The teacher's logits dtype -> how the store keeps it (numpy has no bfloat16: raw bits).
_STORED = {
    torch.float32: np.dtype(np.float32),
    torch.float16: np.dtype(np.float16),
    torch.bfloat16: np.dtype(np.uint16),
}


def store_key(meta: dict[str, Any]) -> str:
    """The store's directory name: a hash of its metadata (canonical JSON)."""
    text = json.dumps(meta, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


class LogitStore:
    """The memory-mapped logits and fill flags of one (teacher, data, view set, precision)."""

    def __init__(self, directory: Path, dtype: torch.dtype) -> None:
        self.directory = directory
        self.dtype = dtype
        self.logits = np.load(directory / "logits.npy", mmap_mode="r+")
        self.filled = np.load(directory / "filled.npy", mmap_mode="r+")

    @classmethod
    def open(
        cls, root: Path, meta: dict[str, Any], rows: int, num_classes: int, dtype: torch.dtype
    ) -> LogitStore:
        """Open the store for `meta` under `root`, creating it (preallocated, so a full disk
        fails here with ENOSPC rather than later in a memory-mapped write) if it is new."""
        directory = root / store_key(meta)
        _remove_abandoned(root)
        if not directory.is_dir():
            _create(directory, meta, rows, num_classes, dtype)
        saved = json.loads((directory / "meta.json").read_text())
        if saved != meta:
            raise ValueError(f"{directory}/meta.json describes other logits than this run's")
        store = cls(directory, dtype)
        if store.logits.shape != (rows, num_classes) or store.filled.shape != (rows,):
            raise ValueError(f"{directory} holds arrays of other shapes than its meta.json says")
        return store

    def missing(self, keys: np.ndarray) -> np.ndarray:
        """The distinct keys among `keys` whose logits are not stored yet."""
        return np.unique(keys[self.filled[keys] == 0])

    def write(self, keys: np.ndarray, logits: torch.Tensor) -> None:
        """Put `logits` (rows for `keys`, the teacher's dtype) in place; they count as
        stored once `commit` has flagged them."""
        if logits.dtype != self.dtype:
            raise TypeError(f"this store keeps {self.dtype} logits, got {logits.dtype}")
        self.logits[keys] = _to_numpy(logits)

    def commit(self, keys: np.ndarray) -> None:
        """Flush the written rows to disk, then flag them (and flush the flags): a kill at any
        moment leaves flags only on whole rows."""
        self.logits.flush()
        self.filled[keys] = 1
        self.filled.flush()

    def read(self, keys: np.ndarray) -> torch.Tensor:
        """The stored logits of `keys` as a host tensor of the teacher's dtype."""
        rows = torch.from_numpy(np.ascontiguousarray(self.logits[keys]))
        return rows.view(torch.bfloat16) if self.dtype == torch.bfloat16 else rows


def _to_numpy(logits: torch.Tensor) -> np.ndarray:
    host = logits.detach().cpu()
    if host.dtype == torch.bfloat16:
        host = host.view(torch.uint16)
    return host.numpy()


# A creation takes seconds; a temp dir this old was left by a killed run (and may be large).
ABANDONED_AFTER_S = 3600


def _remove_abandoned(root: Path) -> None:
    """Delete temp dirs of store creations that a kill cut short."""
    if not root.is_dir():
        return
    now = time.time()
    for tmp in root.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            if now - tmp.stat().st_mtime > ABANDONED_AFTER_S:
                shutil.rmtree(tmp)


def _create(
    directory: Path, meta: dict[str, Any], rows: int, num_classes: int, dtype: torch.dtype
) -> None:
    if dtype not in _STORED:
        raise TypeError(f"cannot store {dtype} logits")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(f".{directory.name}.{secrets.token_hex(4)}.tmp")
    tmp.mkdir()
    try:
        _new_array(tmp / "logits.npy", (rows, num_classes), _STORED[dtype])
        _new_array(tmp / "filled.npy", (rows,), np.dtype(np.uint8))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        try:
            os.rename(tmp, directory)
        except OSError as error:  # another process created it first: use theirs
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _new_array(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """A zero-filled .npy file whose blocks are all allocated on disk."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    offset = array.offset
    size = offset + array.nbytes
    del array
    if not hasattr(os, "posix_fallocate"):  # macOS: the sparse file has to do
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, size)
    finally:
        os.close(fd)

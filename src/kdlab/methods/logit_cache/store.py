"""Teacher logits per (training image, view) on disk, shared by every run that can use them.

Layout of one store (a directory named by the hash of everything the logits depend on):

    meta.json     what the logits are of: teacher, images, normalisation, views, precision...
    logits.npy    (images * views, classes) in the teacher's own output dtype (bf16 as raw bits)
    check.npy     (images * views,) uint64: each row's checksum (integrity.py)
    filled.npy    (images * views,) uint8: 1 where the row holds the teacher's logits

The arrays are memory-mapped and written in place, so runs of a sweep (even in parallel
processes) add to one store without rewriting it. A row and its check are written, then
flushed, then flagged, so a kill at any moment leaves flags only on rows that are whole.
The store is created complete in a temp directory and renamed into place: two runs creating
it at once both end up using the one that won the rename. Rows are flushed once per epoch,
not per write. Files whose size disagrees with their header, fill flags other than 0/1 and
rows failing their check raise StoreDamaged: the store is set aside and rebuilt. A store on
storage that refuses writes is opened read-only (its rows are used, none are added).
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

from kdlab.methods.logit_cache.integrity import StoreDamaged, check_npy, row_checks, set_aside

FORMAT = 3  # 3: a row's check includes its store's name

# The teacher's logits dtype -> how the store keeps it (numpy has no bfloat16: raw bits).
_STORED = {
    torch.float32: np.dtype(np.float32),
    torch.float16: np.dtype(np.float16),
    torch.bfloat16: np.dtype(np.uint16),
}


def store_key(meta: dict[str, Any]) -> str:
    """The store's directory name: a hash of its metadata (canonical JSON), 64 bits in hex
    (also in every row's check)."""
    text = json.dumps(meta, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


class LogitStore:
    """The memory-mapped logits, checks and fill flags of one (teacher, data, views, ...)."""

    def __init__(self, directory: Path, meta: dict[str, Any], dtype: torch.dtype) -> None:
        """Map a store whose files `verify` has accepted."""
        self.directory = directory
        self.meta = meta
        self.dtype = dtype
        self.name = int(store_key(meta), 16)  # in every row's check: rows of other stores fail
        self.writable = _accepts_writes(directory / "logits.npy")
        mode = "r+" if self.writable else "r"
        self.logits = np.load(directory / "logits.npy", mmap_mode=mode)
        self.check = np.load(directory / "check.npy", mmap_mode=mode)
        self.filled = np.load(directory / "filled.npy", mmap_mode=mode)

    @classmethod
    def open(
        cls, root: Path, meta: dict[str, Any], rows: int, num_classes: int, dtype: torch.dtype
    ) -> LogitStore:
        """Open the store for `meta` under `root`, creating it (preallocated, so a full disk
        fails here with ENOSPC rather than later in a memory-mapped write) if it is new, and
        setting it aside for a new one if it is damaged."""
        if dtype not in _STORED:
            raise TypeError(f"cannot store {dtype} logits")
        directory = root / store_key(meta)
        _remove_abandoned(root)
        if not directory.is_dir():
            _create(directory, meta, rows, num_classes, dtype)
        try:
            verify(directory, meta, rows, num_classes, dtype)
        except StoreDamaged as damage:
            set_aside(directory, str(damage))
            _create(directory, meta, rows, num_classes, dtype)
        return cls(directory, meta, dtype)

    def replaced(self, damage: StoreDamaged) -> LogitStore:
        """A new, empty store in place of this damaged one (set aside)."""
        set_aside(self.directory, str(damage))
        rows, num_classes = self.logits.shape
        return LogitStore.open(self.directory.parent, self.meta, rows, num_classes, self.dtype)

    def missing(self, keys: np.ndarray) -> np.ndarray:
        """The distinct keys among `keys` whose logits are not stored yet."""
        flags = self.filled[keys]
        if (flags > 1).any():
            raise StoreDamaged(f"{int((flags > 1).sum())} fill flags are neither 0 nor 1")
        return np.unique(keys[flags == 0])

    def write(self, keys: np.ndarray, logits: torch.Tensor) -> None:
        """Put `logits` (rows for `keys`, the teacher's dtype) and their checks in place;
        they count as stored once `commit` has flagged them."""
        if logits.dtype != self.dtype:
            raise TypeError(f"this store keeps {self.dtype} logits, got {logits.dtype}")
        rows = _to_numpy(logits)
        self.logits[keys] = rows
        self.check[keys] = row_checks(rows, keys, self.name)

    def commit(self, keys: np.ndarray) -> None:
        """Flush the written rows to disk, then flag them (and flush the flags): a kill at any
        moment leaves flags only on whole rows."""
        self.logits.flush()
        self.check.flush()
        self.filled[keys] = 1
        self.filled.flush()

    def read(self, keys: np.ndarray) -> torch.Tensor:
        """The stored logits of `keys` as a host tensor of the teacher's dtype; StoreDamaged
        if any row fails its check."""
        rows = np.ascontiguousarray(self.logits[keys])
        bad = row_checks(rows, keys, self.name) != self.check[keys]
        if bad.any():
            raise StoreDamaged(f"{int(bad.sum())} of {keys.size} rows read fail their checksum")
        tensor = torch.from_numpy(rows)
        return tensor.view(torch.bfloat16) if self.dtype == torch.bfloat16 else tensor


def verify(
    directory: Path, meta: dict[str, Any], rows: int, num_classes: int, dtype: torch.dtype
) -> None:
    """Raise StoreDamaged unless `directory` holds the metadata and whole arrays of a store
    of `meta` (the directory's name is the hash of its meta.json: any other is damage)."""
    try:
        saved = json.loads((directory / "meta.json").read_text())
    except FileNotFoundError:
        raise StoreDamaged("meta.json is missing") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise StoreDamaged(f"meta.json is not JSON ({error})") from None
    if saved != meta:
        raise StoreDamaged("meta.json describes other logits than its name says")
    for name, shape, stored in _arrays(rows, num_classes, dtype):
        check_npy(directory / name, shape, stored)


def _arrays(
    rows: int, num_classes: int, dtype: torch.dtype
) -> list[tuple[str, tuple[int, ...], np.dtype]]:
    """Each array file of a store: name, shape, dtype."""
    return [
        ("logits.npy", (rows, num_classes), _STORED[dtype]),
        ("check.npy", (rows,), np.dtype(np.uint64)),
        ("filled.npy", (rows,), np.dtype(np.uint8)),
    ]


def _accepts_writes(path: Path) -> bool:
    """False where the storage refuses writes (read-only mount, no permission)."""
    try:
        os.close(os.open(path, os.O_RDWR))
    except OSError as error:
        if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return False
        raise
    return True


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
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(f".{directory.name}.{secrets.token_hex(4)}.tmp")
    tmp.mkdir()
    try:
        for name, shape, stored in _arrays(rows, num_classes, dtype):
            _new_array(tmp / name, shape, stored)
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

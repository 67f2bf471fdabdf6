"""Telling a damaged logit store from a sound one: file sizes, and a checksum per row.

A truncated .npy memory-mapped read-write is silently padded with zeros, and a flipped bit
reads as a plausible logit, so neither may reach training. Each file's size is checked
against its header before it is mapped, and every row carries a 64-bit check computed
when it is written and compared when it is read. The check is a sum of the row's words,
each times an odd constant of its column, plus its key times another, plus the store's own
64-bit name (the hash of its teacher's sha256, images, views...), through the splitmix64
finaliser (a bijection): one flipped bit changes the sum by an odd multiple of a power of two
below 2**64, so it is always caught; a row copied from another teacher's store (another
name in its sum) is always caught at its own place; a zeroed, swapped or misplaced row (its
key is in the sum) is caught with probability 1 - 2**-64. It costs a few numpy passes
over the rows an epoch reads: 2 ms per epoch of CIFAR-10's 45,000 views, 28 ms for
CIFAR-100's (measured on a 2-core CPU).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("kdlab")

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


class StoreDamaged(ValueError):
    """The store's files contradict themselves: it is set aside, never trained on."""


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, element-wise (uint64 arithmetic wraps)."""
    z = z ^ (z >> np.uint64(30))
    z = z * np.uint64(0xBF58476D1CE4E5B9)
    z = z ^ (z >> np.uint64(27))
    z = z * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def row_checks(rows: np.ndarray, keys: np.ndarray, store: int) -> np.ndarray:
    """The uint64 check of each row of `rows` (2-D, any 2- or 4-byte dtype) stored at `keys`
    in the store named `store` (its 64-bit key: a row is bound to its teacher and sample)."""
    words = np.ascontiguousarray(rows).view(f"u{rows.dtype.itemsize}").astype(np.uint64)
    columns = _mix(np.arange(1, rows.shape[1] + 1, dtype=np.uint64)) | np.uint64(1)
    total = (words * columns).sum(axis=1, dtype=np.uint64)
    return _mix(total + keys.astype(np.uint64) * _GOLDEN + np.uint64(store))


def check_npy(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Raise StoreDamaged unless `path` is a whole .npy of `shape` and `dtype`."""
    try:
        with path.open("rb") as f:
            version = np.lib.format.read_magic(f)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            saved_shape, fortran, saved_dtype = read(f)
            size = os.fstat(f.fileno()).st_size
            expected = f.tell() + math.prod(saved_shape) * saved_dtype.itemsize
    except FileNotFoundError:
        raise StoreDamaged(f"{path.name} is missing") from None
    except ValueError as error:
        raise StoreDamaged(f"{path.name} has no valid .npy header ({error})") from None
    if (tuple(saved_shape), saved_dtype, fortran) != (shape, dtype, False):
        raise StoreDamaged(f"{path.name} holds a {saved_dtype} array {saved_shape}, not {shape}")
    if size != expected:
        raise StoreDamaged(f"{path.name} is {size} bytes, its header says {expected}")


def set_aside(directory: Path, reason: str) -> None:
    """Rename a damaged store out of the way (kept for a look; deleting it frees the space).
    Another process may have moved it already; a store that cannot be moved (read-only
    storage) raises OSError, and the caller must not use it."""
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    aside = directory.with_name(f"{directory.name}.damaged-{stamp}")
    with contextlib.suppress(FileNotFoundError):
        os.rename(directory, aside)
        log.warning(
            "teacher logits: the store %s is damaged (%s); moved it to %s (delete it to free "
            "the space) and rebuilding it",
            directory,
            reason,
            aside,
        )

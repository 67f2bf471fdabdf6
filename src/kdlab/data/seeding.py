"""Independent, reproducible random streams derived from integer keys (never the global RNG)."""

from __future__ import annotations

import numpy as np
import torch


def seeded_generator(*keys: int) -> torch.Generator:
    """A CPU generator whose stream is a pure function of `keys`, e.g. (seed, purpose, epoch).

    Keys are mixed with NumPy's SeedSequence so that nearby keys give unrelated streams.
    """
    state = np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in keys]).generate_state(2)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))

"""A built-in procedural data set: 32x32 RGB textured shapes in 10 classes, no files needed
(served resized to another data.image_size, as an image folder is).

A class is a shape (disk, ring, square, triangle, cross) filled with a texture (stripes or
checks), so there is graded similarity for a teacher's soft targets to carry: the two classes
of a shape differ only in fine texture (which blurs when the object is small or faint), and
disk/ring and square/triangle share outline traits. Colours are random and uninformative.
Each image varies position, size, rotation, texture scale/phase/contrast and background, plus
pixel noise (semi-transparent distractor shapes behind the object are a knob, off by default:
with them, no model got past 20% within the quick preset's budget on 2 CPU cores). The images are a
pure function of a fixed data seed, independent of the training seed.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from kdlab.data.seeding import seeded_generator
from kdlab.data.settings import DataConfig
from kdlab.data.source import ImageSet, Source

SIZE = 32
DATA_SEED = 0xC0FFEE
TRAIN_STREAM, TEST_STREAM = 1, 2
DEFAULT_TRAIN_SIZE, DEFAULT_TEST_SIZE = 10_000, 2_000
_CHUNK = 512  # images rendered at once: keeps the (n,32,32) temporaries in cache
_PIXELS = torch.arange(SIZE) + 0.5 - SIZE / 2  # pixel centres, relative to the image centre

# Difficulty knobs (pixels unless noted).
OBJECT_RADIUS = (6.0, 12.0)
OBJECT_SHIFT = 6.0  # max offset of the object's centre from the image centre
TEXTURE_PERIOD = (3.5, 6.0)
TEXTURE_CONTRAST = (0.4, 0.85)  # fraction of the way from base to ink colour
DISTRACTORS = 0
DISTRACTOR_RADIUS = (3.0, 6.0)
DISTRACTOR_OPACITY = (0.3, 0.7)
NOISE_STD = (0.0, 0.05)  # of uniform pixel noise, in [0, 1] intensity units


def _disk(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.hypot(u, v) - 1.0


def _ring(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (torch.hypot(u, v) - 0.72).abs() - 0.28


def _square(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.maximum(u.abs(), v.abs()) - 0.8


def _triangle(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    half = math.sqrt(3) / 2
    edges = torch.stack((-v, half * u + 0.5 * v, -half * u + 0.5 * v))
    return edges.amax(0) - 0.55


def _cross(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    au, av = u.abs(), v.abs()
    bar = torch.maximum(au - 0.3, av - 1.0)
    return torch.minimum(bar, torch.maximum(au - 1.0, av - 0.3))


# Signed distance (in units of the radius, negative inside) of each shape at rotated coords.
SHAPES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "disk": _disk,
    "ring": _ring,
    "square": _square,
    "triangle": _triangle,
    "cross": _cross,
}
TEXTURES = ("stripes", "checks")
CLASS_NAMES = [f"{shape}-{texture}" for shape in SHAPES for texture in TEXTURES]


@dataclass(frozen=True)
class _Layer:
    """Per-image parameters of one textured shape, each a tensor with a leading batch dim."""

    shape: torch.Tensor
    texture: torch.Tensor
    cx: torch.Tensor
    cy: torch.Tensor
    radius: torch.Tensor
    angle: torch.Tensor
    period: torch.Tensor
    texture_angle: torch.Tensor
    phase: torch.Tensor  # (n, 2)
    base: torch.Tensor  # (n, 3) RGB in [0, 1]
    ink: torch.Tensor  # (n, 3)
    contrast: torch.Tensor
    opacity: torch.Tensor

    def __getitem__(self, part: slice) -> _Layer:
        return _Layer(**{f.name: getattr(self, f.name)[part] for f in fields(self)})


def _uniform(
    bounds: tuple[float, float], n: int, gen: torch.Generator, *shape: int
) -> torch.Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand((n, *shape), generator=gen)


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    k = (torch.tensor([5.0, 3.0, 1.0]) + 6 * h[:, None]) % 6
    return v[:, None] * (1 - s[:, None] * torch.minimum(k, 4 - k).clamp(0, 1))


def _random_colour(
    n: int, gen: torch.Generator, saturation: tuple[float, float], value: tuple[float, float]
) -> torch.Tensor:
    hue = torch.rand(n, generator=gen)
    return _hsv_to_rgb(hue, _uniform(saturation, n, gen), _uniform(value, n, gen))


def _draw_layer(
    shape: torch.Tensor,
    texture: torch.Tensor,
    gen: torch.Generator,
    *,
    radius: tuple[float, float],
    shift: float,
    opacity: tuple[float, float],
) -> _Layer:
    n = shape.numel()
    return _Layer(
        shape=shape,
        texture=texture,
        cx=_uniform((-shift, shift), n, gen),
        cy=_uniform((-shift, shift), n, gen),
        radius=_uniform(radius, n, gen),
        angle=_uniform((0, 2 * math.pi), n, gen),
        period=_uniform(TEXTURE_PERIOD, n, gen),
        texture_angle=_uniform((0, math.pi), n, gen),
        phase=_uniform((0, 2 * math.pi), n, gen, 2),
        base=_random_colour(n, gen, (0.4, 1.0), (0.5, 1.0)),
        ink=_random_colour(n, gen, (0.4, 1.0), (0.5, 1.0)) * _uniform((0.0, 0.4), n, gen, 1),
        contrast=_uniform(TEXTURE_CONTRAST, n, gen),
        opacity=_uniform(opacity, n, gen),
    )


def _render(layer: _Layer) -> tuple[torch.Tensor, torch.Tensor]:
    """Coverage (n,1,S,S) with one pixel of anti-aliasing, and textured colour (n,3,S,S)."""
    n = layer.shape.numel()
    x = _PIXELS.view(1, 1, SIZE) - layer.cx.view(n, 1, 1)
    y = _PIXELS.view(1, SIZE, 1) - layer.cy.view(n, 1, 1)
    r = layer.radius.view(n, 1, 1)
    cos, sin = layer.angle.cos().view(n, 1, 1), layer.angle.sin().view(n, 1, 1)
    u, v = (x * cos + y * sin) / r, (y * cos - x * sin) / r
    distance = torch.empty(n, SIZE, SIZE)
    for k, signed_distance in enumerate(SHAPES.values()):
        mine = layer.shape == k
        distance[mine] = signed_distance(u[mine], v[mine])
    coverage = (0.5 - distance * r).clamp(0, 1) * layer.opacity.view(n, 1, 1)

    tcos = layer.texture_angle.cos().view(n, 1, 1)
    tsin = layer.texture_angle.sin().view(n, 1, 1)
    step = (2 * math.pi / layer.period).view(n, 1, 1)
    wave = torch.sin((x * tcos + y * tsin) * step + layer.phase[:, :1, None])
    across = torch.sin((y * tcos - x * tsin) * step + layer.phase[:, 1:, None])
    wave = torch.where((layer.texture == 1).view(n, 1, 1), wave * across * 2, wave)
    pattern = (0.5 + 2 * wave).clamp(0, 1) * layer.contrast.view(n, 1, 1)
    base, ink = layer.base.view(n, 3, 1, 1), layer.ink.view(n, 3, 1, 1)
    return coverage.unsqueeze(1), base + (ink - base) * pattern.unsqueeze(1)


def _background(n: int, gen: torch.Generator) -> torch.Tensor:
    """A dull random colour with a linear brightness ramp in a random direction."""
    colour = _random_colour(n, gen, (0.0, 0.5), (0.15, 0.85)).view(n, 3, 1, 1)
    direction = _uniform((0, 2 * math.pi), n, gen).view(n, 1, 1)
    slope = _uniform((0.0, 0.3), n, gen).view(n, 1, 1) / SIZE
    along = _PIXELS.view(1, 1, SIZE) * direction.cos() + _PIXELS.view(1, SIZE, 1) * direction.sin()
    return colour + (slope * along).unsqueeze(1)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one thread while generating.

    These small ops gain little from more threads, and on a busy machine threads waiting for
    each other made generation several times slower.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@_one_thread()
def generate(n: int, stream: int) -> ImageSet:
    """`n` images, classes in turn (0, 1, ..., 9, 0, ...), a pure function of (n, stream)."""
    gen = seeded_generator(DATA_SEED, stream)
    labels = torch.arange(n) % len(CLASS_NAMES)
    shapes, textures = labels // len(TEXTURES), labels % len(TEXTURES)
    main = _draw_layer(
        shapes, textures, gen, radius=OBJECT_RADIUS, shift=OBJECT_SHIFT, opacity=(1.0, 1.0)
    )
    clutter = [
        _draw_layer(
            torch.randint(len(SHAPES), (n,), generator=gen),
            torch.randint(len(TEXTURES), (n,), generator=gen),
            gen,
            radius=DISTRACTOR_RADIUS,
            shift=SIZE / 2,
            opacity=DISTRACTOR_OPACITY,
        )
        for _ in range(DISTRACTORS)
    ]
    noise_std = _uniform(NOISE_STD, n, gen).view(n, 1, 1, 1)
    images = torch.empty((n, 3, SIZE, SIZE), dtype=torch.uint8)
    for start in range(0, n, _CHUNK):
        part = slice(start, start + _CHUNK)
        canvas = _background(min(_CHUNK, n - start), gen)
        for layer in [*(c[part] for c in clutter), main[part]]:
            coverage, colour = _render(layer)
            canvas = canvas + (colour - canvas) * coverage
        uniform = torch.rand(canvas.shape, generator=gen) - 0.5  # std 1/sqrt(12)
        canvas += noise_std[part] * math.sqrt(12) * uniform
        images[part] = (canvas.clamp(0, 1) * 255).round().to(torch.uint8)
    return ImageSet(images, labels)


@dataclass
class SyntheticConfig(DataConfig):
    """`data=synthetic`: a fixed set of 10,000 train and 2,000 test images, subset like any
    other data set (so the val split is the same for every train_size)."""


@functools.cache
def _full_set(n: int, stream: int) -> ImageSet:
    return generate(n, stream)


def load(_: SyntheticConfig) -> Source[ImageSet]:
    """The registry's entry point: always the full generated set (disjoint random streams),
    whatever sizes the settings ask for. Generated once per process (0.65 s of CPU on this
    2-core kind), since several runs share one process in a Hydra sweep, a study's launcher
    worker or the API; each run gets copies, so nothing it does reaches the next one."""
    train = _full_set(DEFAULT_TRAIN_SIZE, TRAIN_STREAM)
    test = _full_set(DEFAULT_TEST_SIZE, TEST_STREAM)
    return Source(
        ImageSet(train.images.clone(), train.labels.clone()),
        ImageSet(test.images.clone(), test.labels.clone()),
        list(CLASS_NAMES),
    )


def write_tiny(_: Path) -> dict[str, Any]:
    """Nothing to write: the set is generated; its `data.*` settings for a small run."""
    return {"train_size": 100, "test_size": 50}

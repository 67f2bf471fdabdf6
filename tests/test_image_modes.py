"""Image files of every PIL mode decode to the 8-bit RGB values they stand for."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from kdlab.data.imagefolder import decode_image

SIZE = 4  # the files' own size: decoding resizes nothing, so every pixel can be checked


def grey(values) -> np.ndarray:
    """A (4, 4) test pattern of `values`, cycled."""
    return np.resize(np.asarray(values), (SIZE, SIZE))


def rgb_of_grey(levels: np.ndarray) -> np.ndarray:
    return np.repeat(levels[..., None], 3, axis=2).astype(np.uint8)


def over_white(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Alpha compositing on white, in float64, rounded."""
    c, a = colour.astype(np.float64), alpha.astype(np.float64)[..., None]
    return np.round((c * a + 255.0 * (255.0 - a)) / 255.0).astype(np.uint8)


def decoded(tmp_path, image: Image.Image, suffix: str = ".png") -> np.ndarray:
    path = tmp_path / f"image{suffix}"
    image.save(path)
    return decode_image(str(path), SIZE).permute(1, 2, 0).numpy()


SIXTEEN = grey([0, 257, 65535, 32768, 12850, 1000, 40000, 65280])


def test_a_16_bit_png_is_scaled_to_8_bits_not_clipped_to_white(tmp_path):
    image = Image.fromarray(SIXTEEN.astype(np.uint16))  # mode I;16
    expected = np.round(SIXTEEN / 65535 * 255)
    assert np.array_equal(decoded(tmp_path, image), rgb_of_grey(expected))


def test_32_bit_integer_greys_are_read_as_16_bit(tmp_path):
    image = Image.fromarray(SIXTEEN.astype(np.int32), "I")
    expected = np.round(SIXTEEN / 65535 * 255)
    assert np.array_equal(decoded(tmp_path, image, ".tif"), rgb_of_grey(expected))


def test_float_greys_are_read_as_0_to_1(tmp_path):
    values = grey([0.0, 1.0, 0.5, 0.25, -0.5, 2.0, 0.1, 0.9]).astype(np.float32)
    expected = np.clip(np.round(values.astype(np.float64) * 255), 0, 255)
    image = Image.fromarray(values, "F")
    assert np.array_equal(decoded(tmp_path, image, ".tif"), rgb_of_grey(expected))


def test_8_bit_and_1_bit_greys_are_repeated_in_every_channel(tmp_path):
    levels = grey([0, 1, 17, 128, 200, 254, 255, 99]).astype(np.uint8)
    assert np.array_equal(decoded(tmp_path, Image.fromarray(levels, "L")), rgb_of_grey(levels))
    bits = grey([0, 1, 1, 0, 1]).astype(bool)
    image = Image.fromarray(bits)  # mode 1
    assert image.mode == "1"
    assert np.array_equal(decoded(tmp_path, image), rgb_of_grey(bits * 255))


def palette_image(transparency: int | None) -> tuple[Image.Image, np.ndarray, np.ndarray]:
    colours = np.array([[255, 0, 0], [0, 128, 255], [10, 20, 30], [250, 250, 0]], np.uint8)
    index = grey([0, 1, 2, 3, 1, 2]).astype(np.uint8)
    image = Image.fromarray(index, "P")
    image.putpalette(colours.flatten().tolist())
    if transparency is not None:
        image.info["transparency"] = transparency
    return image, colours[index], index


def test_palette_images_look_their_colours_up(tmp_path):
    image, expected, _ = palette_image(None)
    assert np.array_equal(decoded(tmp_path, image), expected)


def test_a_palette_transparent_colour_shows_the_white_background(tmp_path):
    image, colours, index = palette_image(transparency=2)
    expected = np.where((index == 2)[..., None], 255, colours)
    assert np.array_equal(decoded(tmp_path, image), expected)


ALPHA = grey([0, 255, 128, 1, 254, 64, 200, 17]).astype(np.uint8)


def test_rgba_is_composited_on_white(tmp_path):
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    image = Image.fromarray(np.dstack([colour, ALPHA]), "RGBA")
    assert np.array_equal(decoded(tmp_path, image), over_white(colour, ALPHA))


def test_grey_with_alpha_is_composited_on_white(tmp_path):
    levels = grey([0, 30, 90, 255, 128, 7]).astype(np.uint8)
    image = Image.fromarray(np.dstack([levels, ALPHA]), "LA")
    assert np.array_equal(decoded(tmp_path, image), over_white(rgb_of_grey(levels), ALPHA))


def test_cmyk_is_the_complement_of_ink_and_black(tmp_path):
    rng = np.random.default_rng(1)
    cmyk = rng.integers(0, 256, (SIZE, SIZE, 4), dtype=np.uint8)
    c = cmyk.astype(np.float64)
    expected = np.round((255 - c[..., :3]) * (255 - c[..., 3:]) / 255)
    image = Image.fromarray(cmyk, "CMYK")
    assert np.array_equal(decoded(tmp_path, image, ".tif"), expected)


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "RGBA", "LA", "CMYK", "1", "I;16", "I", "F"])
def test_every_mode_decodes_to_uint8_rgb_of_the_requested_size(tmp_path, mode):
    image = Image.new(mode, (10, 6))
    tensor = decode_image(str(save(tmp_path, image)), SIZE)
    assert tensor.shape == (3, SIZE, SIZE) and str(tensor.dtype) == "torch.uint8"


def save(tmp_path, image: Image.Image):
    path = tmp_path / ("image.tif" if image.mode in ("I", "F", "CMYK") else "image.png")
    image.save(path)
    return path

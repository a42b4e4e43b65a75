"""Display colours of labels: derived from the label's name, so a label keeps its colour when the vocabulary
changes around it."""
from __future__ import annotations

import colorsys
import zlib
from typing import Sequence

import numpy as np


def label_colours(labels: Sequence[str]) -> np.ndarray:
    """(len(labels), 3) uint8 colours: hue from a CRC-32 of the lower-cased name, saturation and value from
    three bands each, so equal names always get equal colours."""
    colours = np.empty((len(labels), 3), np.uint8)
    for i, label in enumerate(labels):
        code = zlib.crc32(label.strip().lower().encode("utf-8"))
        hue = (code & 0xFFFF) / 0x10000
        saturation = (0.55, 0.75, 0.95)[(code >> 16) % 3]
        value = (0.7, 0.85, 1.0)[(code >> 20) % 3]
        colours[i] = np.round(np.array(colorsys.hsv_to_rgb(hue, saturation, value)) * 255)
    return colours


_SRGB_TO_XYZ = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
_D65_WHITE = np.array([0.95047, 1.0, 1.08883])


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) sRGB in [0, 1] -> (N, 3) CIELAB (D65): Euclidean distance there is the CIE76 colour difference."""
    rgb = np.asarray(rgb, np.float64)
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _SRGB_TO_XYZ.T / _D65_WHITE
    delta = 6.0 / 29.0
    f = np.where(xyz > delta ** 3, np.cbrt(xyz), xyz / (3 * delta ** 2) + 4.0 / 29.0)
    return np.stack([116.0 * f[:, 1] - 16.0, 500.0 * (f[:, 0] - f[:, 1]), 200.0 * (f[:, 1] - f[:, 2])], axis=1)


def distinct_colours(count: int, max_lightness: float = 88.0) -> np.ndarray:
    """(count, 3) sRGB colours in [0, 1], each as far (CIE76) from the ones before it as a 16-level RGB grid
    allows (greedy farthest-point choice), none lighter than `max_lightness` so they show on white. The first
    colours are the most distinct: give them to the most frequent labels."""
    levels = np.linspace(0.0, 1.0, 16)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 3)
    lab = srgb_to_lab(grid)
    keep = lab[:, 0] <= max_lightness
    grid, lab = grid[keep], lab[keep]
    chosen = [int(np.argmax(np.hypot(lab[:, 1], lab[:, 2])))]         # start from the most saturated colour
    distance = np.linalg.norm(lab - lab[chosen[0]], axis=1)
    while len(chosen) < count:
        chosen.append(int(np.argmax(distance)))
        distance = np.minimum(distance, np.linalg.norm(lab - lab[chosen[-1]], axis=1))
    return grid[chosen[:count]]

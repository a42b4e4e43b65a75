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

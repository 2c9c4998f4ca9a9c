"""Tiny image folders for the converter tests (not a test module)."""
import os

import numpy as np
from PIL import Image


def noise(seed: int, height: int = 12, width: int = 10, channels: int = 3) -> np.ndarray:
    """Random pixels: any lossy step changes them, so equality proves a lossless path."""
    shape = (height, width) if channels == 1 else (height, width, channels)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def save(path, pixels: np.ndarray, fmt: str = "PNG") -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt)


def make_folder(root, classes=("ant", "bee", "cat", "dog", "eel"), per_class: int = 3, **noise_kwargs) -> dict:
    """``root/<class>/<i>.png`` of noise; returns class -> list of the pixel arrays in file order."""
    out = {}
    for c, name in enumerate(classes):
        out[name] = []
        for i in range(per_class):
            pixels = noise(100 * c + i, **noise_kwargs)
            save(os.path.join(root, name, f"{i}.png"), pixels)
            out[name].append(pixels)
    return out


def touch_later(path) -> None:
    """Moves a file's modification time forward a second (file systems with coarse times see a change)."""
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))

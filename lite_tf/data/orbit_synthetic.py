"""Small ORBIT-format folders of generated frames, for tests and demos (the real data is not public
to download here).

Each object is a coloured shape (colour and shape fixed per object kind, kinds shared by all users so
meta-training can transfer). Clean videos show the object large and centred on a plain background;
clutter videos show it smaller, off centre, over a noisy background with distractor shapes, so
CLU-VE is harder than CLE-VE. Frames drift slightly from one to the next, like a hand-held video.
"""
from __future__ import annotations

import os
from typing import Dict, Optional

import numpy as np
from PIL import Image

from lite_tf.data.orbit.index import SPLITS

PALETTE = np.array([[220, 40, 40], [40, 170, 60], [40, 80, 220], [230, 200, 30], [170, 60, 200],
                    [30, 190, 200], [240, 130, 20], [120, 120, 120]], dtype=np.float32)
SHAPES = ("disc", "square", "triangle", "ring")


def _mask(shape: str, size: int, cx: float, cy: float, radius: float) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    dx, dy = (x - cx) / radius, (y - cy) / radius
    if shape == "disc":
        return dx ** 2 + dy ** 2 <= 1.0
    if shape == "square":
        return (np.abs(dx) <= 0.85) & (np.abs(dy) <= 0.85)
    if shape == "triangle":
        return (dy <= 0.9) & (dy >= -0.9) & (np.abs(dx) <= (dy + 0.9) / 1.8)
    if shape == "ring":
        r2 = dx ** 2 + dy ** 2
        return (r2 <= 1.0) & (r2 >= 0.35)
    raise ValueError(f"Unknown shape {shape!r}; expected one of {SHAPES}.")


def object_kind(kind: int):
    """(colour, shape) of object kind ``kind``."""
    return PALETTE[kind % len(PALETTE)], SHAPES[(kind // len(PALETTE) + kind) % len(SHAPES)]


def render_frame(rng: np.random.Generator, kind: int, clutter: bool, size: int, t: float) -> np.ndarray:
    """One uint8 [size, size, 3] frame of object ``kind``; ``t`` in [0, 1] is the time in the video."""
    colour, shape = object_kind(kind)
    if clutter:
        frame = rng.uniform(60, 200, size=(size, size, 3)).astype(np.float32)
        for _ in range(3):  # distractors in other colours/shapes
            other = int(rng.integers(0, len(PALETTE) * len(SHAPES)))
            if other == kind:
                continue
            c, s = object_kind(other)
            frame[_mask(s, size, *rng.uniform(0, size, 2), size * rng.uniform(0.1, 0.2))] = c
        cx, cy = rng.uniform(0.3, 0.7, 2) * size
        radius = size * 0.18
    else:
        frame = np.full((size, size, 3), 235.0, np.float32) + rng.normal(0, 4, (size, size, 3))
        cx, cy = size / 2 + size * 0.05 * np.array([np.sin(6 * t), np.cos(5 * t)])
        radius = size * 0.32
    frame[_mask(shape, size, cx, cy, radius)] = colour + rng.normal(0, 6, 3)
    return np.clip(frame, 0, 255).astype(np.uint8)


def make_orbit_folder(root: str, users: Optional[Dict[str, int]] = None, objects_per_user: int = 3,
                      clean_videos: int = 3, clutter_videos: int = 2, frames_per_video: int = 12,
                      frame_size: int = 32, seed: int = 0, image_format: str = "jpg") -> str:
    """Writes ``<root>/<split>/<user>/<object>/{clean,clutter}/<video>/<video>-NNNNN.<fmt>``.

    ``users`` maps split -> number of users (default train 3, validation 1, test 2). User names are
    unique across splits (user splits are disjoint). Returns ``root``.
    """
    users = users or {"train": 3, "validation": 1, "test": 2}
    for split in users:
        if split not in SPLITS:
            raise ValueError(f"Unknown split {split!r}; expected one of {SPLITS}.")
    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format must be 'jpg' or 'png'; got {image_format!r}.")
    rng = np.random.default_rng(seed)
    kinds = len(PALETTE) * len(SHAPES)
    if objects_per_user > kinds:
        raise ValueError(f"objects_per_user must be <= {kinds}; got {objects_per_user}.")
    user_id = 0
    for split, count in users.items():
        for _ in range(count):
            user = f"P{user_id:03d}"
            user_id += 1
            for kind in rng.choice(kinds, objects_per_user, replace=False):
                obj = f"object_{int(kind):02d}"
                for video_type, num_videos in (("clean", clean_videos), ("clutter", clutter_videos)):
                    for v in range(num_videos):
                        video = f"{user}--{obj}--{video_type}{v}"
                        folder = os.path.join(root, split, user, obj, video_type, video)
                        os.makedirs(folder, exist_ok=True)
                        for f in range(frames_per_video):
                            frame = render_frame(rng, int(kind), video_type == "clutter", frame_size,
                                                 f / max(1, frames_per_video - 1))
                            Image.fromarray(frame).save(os.path.join(folder, f"{video}-{f + 1:05d}.{image_format}"),
                                                        quality=92)
    return root

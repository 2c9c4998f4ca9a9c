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

from lite_tf import atomic
from lite_tf.data.orbit.annotations import BOUNDING_BOX, FRAME_ISSUES
from lite_tf.data.orbit.index import SPLITS
from lite_tf.errors import ConfigError

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
    raise ConfigError(f"Unknown shape {shape!r}; expected one of {SHAPES}.")


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


OBJECT_NAMES = ("keys", "watering can", "tv remote", "face mask", "hairbrush", "mug", "phone", "wallet",
                "sunglasses", "water bottle", "bag", "headphones", "door", "car keys", "remote control", "cup")
_ID_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"))


def object_name(kind: int) -> str:
    """A real-looking ORBIT object folder name (some with spaces) for object kind ``kind``."""
    base = OBJECT_NAMES[kind % len(OBJECT_NAMES)]
    return base if kind < len(OBJECT_NAMES) else f"{base} {kind // len(OBJECT_NAMES) + 1}"


def make_orbit_folder(root: str, users: Optional[Dict[str, int]] = None, objects_per_user: int = 3,
                      clean_videos=3, clutter_videos=2, frames_per_video=12,
                      frame_size: int = 32, seed: int = 0, image_format: str = "jpg",
                      annotations: bool = False, not_present_rate: float = 0.2) -> str:
    """Writes ``<root>/<split>/<user>/<object>/{clean,clutter}/<video>/<video>-NNNNN.<fmt>``.

    Names follow the real ORBIT data: users ``P###``, object folders such as ``watering can``,
    videos ``P###--<object>--<clean|clutter>--<id>``. ``users`` maps split -> number of users
    (default train 3, validation 1, test 2); user names are unique across splits. ``clean_videos``,
    ``clutter_videos`` and ``frames_per_video`` are ints or (low, high) ranges drawn per object /
    video. With ``annotations``, ``<root>/annotations/<split>/<video>.json`` holds per-frame
    annotations in the official layout (lite_tf/data/orbit/annotations.py): clutter frames a bounding
    box (null when the object is not present, with probability ``not_present_rate``), clean frames
    the 7 quality issues. Returns ``root``.
    """
    users = users or {"train": 3, "validation": 1, "test": 2}
    for split in users:
        if split not in SPLITS:
            raise ConfigError(f"Unknown split {split!r}; expected one of {SPLITS}.")
    if image_format not in ("jpg", "png"):
        raise ConfigError(f"image_format must be 'jpg' or 'png'; got {image_format!r}.")
    rng = np.random.default_rng(seed)
    kinds = len(PALETTE) * len(SHAPES)
    if objects_per_user > kinds:
        raise ConfigError(f"objects_per_user must be <= {kinds}; got {objects_per_user}.")

    def draw(value) -> int:
        return int(rng.integers(value[0], value[1] + 1)) if isinstance(value, (tuple, list)) else int(value)

    user_id = 0
    for split, count in users.items():
        for _ in range(count):
            user = f"P{user_id:03d}"
            user_id += 1
            for kind in rng.choice(kinds, objects_per_user, replace=False):
                obj = object_name(int(kind))
                for video_type, num_videos in (("clean", draw(clean_videos)), ("clutter", draw(clutter_videos))):
                    for _ in range(num_videos):
                        video = f"{user}--{obj}--{video_type}--{''.join(rng.choice(_ID_ALPHABET, 11))}"
                        folder = os.path.join(root, split, user, obj, video_type, video)
                        os.makedirs(folder, exist_ok=True)
                        frames = draw(frames_per_video)
                        notes = {}
                        for f in range(frames):
                            frame = render_frame(rng, int(kind), video_type == "clutter", frame_size,
                                                 f / max(1, frames - 1))
                            name = f"{video}-{f + 1:05d}.{image_format}"
                            Image.fromarray(frame).save(os.path.join(folder, name), quality=92)
                            notes[name] = _frame_annotations(rng, video_type, not_present_rate)
                        if annotations:
                            atomic.write_json(os.path.join(root, "annotations", split, f"{video}.json"), notes)
    return root


def _frame_annotations(rng: np.random.Generator, video_type: str, not_present_rate: float) -> dict:
    """One frame's annotations in the official layout (random, for tests)."""
    absent = bool(rng.random() < not_present_rate)
    if video_type == "clutter":
        if absent:
            return {BOUNDING_BOX: None, "object_not_present_issue": True}
        x, y = (int(v) for v in rng.integers(0, 900, 2))
        w, h = (int(v) for v in rng.integers(1, 1080 - max(x, y), 2))
        return {BOUNDING_BOX: {"x": x, "y": y, "w": w, "h": h}, "object_not_present_issue": False}
    notes = {issue: (None if absent else bool(rng.random() < 0.3)) for issue in FRAME_ISSUES}
    notes["object_not_present_issue"] = absent
    return notes

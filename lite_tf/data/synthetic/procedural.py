"""Procedurally generated few-shot image classes: built-in data that needs no download.

Each source has its own look:
  ``glyphs``    stroke-drawn symbols (a few Bezier strokes, like handwritten characters);
  ``textures``  oriented periodic patterns (sums of gratings with class-specific orientation,
                frequency and waveform), seen through a random colour map;
  ``shapes``    compositions of two to four geometric primitives at fixed relative positions.
A class is a prototype: parameters drawn from a generator seeded by (seed, source, class id).
Every image is a random variation of it (position, scale, rotation, small deformation, colours,
background gradient and clutter, pixel noise), drawn from a generator seeded by (seed, source,
class id, image index). Colour and background never identify a class, so a randomly initialised
network starts near chance and meta-training has to learn the shape or pattern.

Rendering is pure NumPy/PIL and deterministic: the same arguments give byte-identical JPEGs.
:func:`write_synthetic_dataset` writes one source as a Meta-Dataset record set (one ``.tfrecords``
file per class, JPEG bytes, ``dataset_spec.json``) through lite_tf/data/writing/writer.py, so it is atomic,
resumable and refuses to mix with a different dataset in the same folder.
"""
from __future__ import annotations

import functools
import io
import math
import os
import zlib
from typing import Dict, List, Optional, Sequence

import gin
import numpy as np
from PIL import Image, ImageDraw

from lite_tf.data.writing import writer
from lite_tf.errors import ConfigError

DEFAULT_IMAGE_SIZE = 224
DEFAULT_JPEG_QUALITY = 90
MAX_IMAGE_SIZE = 2048
DEFAULT_CLASSES_PER_SPLIT = (20, 8, 8)  # TRAIN, VALID, TEST
DEFAULT_IMAGES_PER_CLASS = 30
# Bump when rendering changes, so existing generated data is recognised as different.
GENERATOR_VERSION = 1
_PROTOTYPE_STREAM = 0  # distinguishes the prototype generator from the per-image ones
_IMAGE_STREAM = 1


def _rng(seed: int, source: str, class_id: int, stream: int, index: int = 0) -> np.random.Generator:
    """Independent, reproducible generator for one (seed, source, class, stream, index)."""
    if seed < 0:
        raise ConfigError(f"The synthetic data seed must be >= 0; got {seed}.")
    key = zlib.crc32(source.encode("utf-8"))
    return np.random.default_rng(np.random.SeedSequence([seed, key, class_id, stream, index]))


# ----------------------------------------------------------------------------- shared variation
def _luma(colour: np.ndarray) -> float:
    return float(0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2])


def _colour_pair(rng: np.random.Generator, min_contrast: float = 90.0):
    """A background and a foreground colour whose luminances differ by at least ``min_contrast``."""
    background = rng.integers(0, 256, 3)
    while True:
        foreground = rng.integers(0, 256, 3)
        if abs(_luma(foreground) - _luma(background)) >= min_contrast:
            return background, foreground


def _background(rng: np.random.Generator, size: int, base: np.ndarray) -> Image.Image:
    """A linear gradient from ``base`` to a nearby colour in a random direction."""
    angle = rng.uniform(0, 2 * math.pi)
    other = np.clip(base + rng.normal(0, 40, 3), 0, 255)
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    t = (math.cos(angle) * ramp[None, :] + math.sin(angle) * ramp[:, None]) + np.float32(0.5)
    pixels = base.astype(np.float32) + t[..., None] * (other - base).astype(np.float32)
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def _clutter(rng: np.random.Generator, draw: ImageDraw.ImageDraw, size: int, background: np.ndarray,
             count: int) -> None:
    """Distractor lines, arcs and ellipses in colours near the background."""
    for _ in range(count):
        colour = tuple(int(c) for c in np.clip(background + rng.normal(0, 35, 3), 0, 255))
        kind = rng.integers(3)
        x0, y0, x1, y1 = rng.uniform(-0.1 * size, 1.1 * size, 4)
        width = max(1, int(rng.uniform(0.005, 0.02) * size))
        box = [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]
        if kind == 0:
            draw.line([x0, y0, x1, y1], fill=colour, width=width)
        elif kind == 1:
            start = rng.uniform(0, 360)
            draw.arc(box, start, start + rng.uniform(60, 300), fill=colour, width=width)
        else:
            draw.ellipse(box, outline=colour, width=width)


def _pose(rng: np.random.Generator, size: int, max_rotation: float, scale_range=(0.36, 0.46)):
    """Maps prototype coordinates in [-1, 1]^2 to pixels: random rotation, scale and shift."""
    angle = math.radians(rng.uniform(-max_rotation, max_rotation))
    scale = rng.uniform(*scale_range) * size
    margin = size / 2 - scale
    centre = size / 2 + rng.uniform(-margin, margin, 2) * 0.8
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    matrix = rotation * scale

    def transform(points: np.ndarray) -> np.ndarray:
        return points @ matrix.T + centre

    return transform, scale, angle


def _finish(rng: np.random.Generator, image: Image.Image) -> np.ndarray:
    """Adds Gaussian pixel noise of random strength; returns uint8 pixels."""
    pixels = np.asarray(image, dtype=np.float32)
    noise = rng.standard_normal(pixels.shape, dtype=np.float32)
    noise *= np.float32(rng.uniform(0.0, 8.0))
    pixels += noise
    return np.clip(pixels, 0, 255, out=pixels).astype(np.uint8)


# ----------------------------------------------------------------------------- glyphs
def _scene(rng: np.random.Generator, size: int, max_rotation: float) -> tuple:
    """(image, draw, background and foreground colours, transform, scale): a cluttered background and
    the object's pose."""
    background, foreground = _colour_pair(rng)
    image = _background(rng, size, background)
    draw = ImageDraw.Draw(image)
    _clutter(rng, draw, size, background, int(rng.integers(1, 5)))
    transform, scale, _ = _pose(rng, size, max_rotation=max_rotation)
    return image, draw, background, foreground, transform, scale


def _bezier(control: np.ndarray, steps: int = 24) -> np.ndarray:
    t = np.linspace(0.0, 1.0, steps)[:, None]
    p0, p1, p2, p3 = control
    return ((1 - t) ** 3) * p0 + 3 * ((1 - t) ** 2) * t * p1 + 3 * (1 - t) * (t ** 2) * p2 + (t ** 3) * p3


def glyph_prototype(rng: np.random.Generator) -> dict:
    """Two to four cubic Bezier strokes; consecutive strokes often start where the last ended."""
    strokes = []
    start = rng.uniform(-0.8, 0.8, 2)
    for _ in range(rng.integers(2, 5)):
        if strokes and rng.random() < 0.5:
            start = strokes[-1][-1]
        else:
            start = rng.uniform(-0.8, 0.8, 2)
        end = np.clip(start + rng.uniform(-1.2, 1.2, 2), -0.9, 0.9)
        middle = rng.uniform(-0.9, 0.9, (2, 2))
        strokes.append(np.stack([start, middle[0], middle[1], end]))
    return {"strokes": np.stack(strokes), "width": rng.uniform(0.10, 0.16)}


def render_glyph(prototype: dict, rng: np.random.Generator, size: int) -> np.ndarray:
    image, draw, _, foreground, transform, scale = _scene(rng, size, max_rotation=20.0)
    width = max(1, int(round(prototype["width"] * rng.uniform(0.7, 1.3) * scale)))
    for control in prototype["strokes"]:
        jittered = control + rng.normal(0.0, 0.06, control.shape)
        points = transform(_bezier(jittered))
        draw.line([tuple(p) for p in points], fill=tuple(int(c) for c in foreground), width=width,
                  joint="curve")
    return _finish(rng, image)


# ----------------------------------------------------------------------------- textures
_WAVEFORMS = ("sine", "square", "triangle")


def texture_prototype(rng: np.random.Generator) -> dict:
    """Two or three gratings: orientation, frequency (cycles per image), waveform and weight."""
    count = int(rng.integers(2, 4))
    return {
        "angles": rng.uniform(0, math.pi, count),
        "frequencies": rng.uniform(3.0, 14.0, count),
        "waveforms": rng.integers(0, len(_WAVEFORMS), count),
        "weights": rng.uniform(0.4, 1.0, count),
    }


def _wave(phase: np.ndarray, waveform: int) -> np.ndarray:
    if waveform == 0:
        return np.sin(phase)
    if waveform == 1:
        return np.tanh(4.0 * np.sin(phase))  # a softened square wave (no aliasing staircase)
    return 2.0 / math.pi * np.arcsin(np.sin(phase))


def render_texture(prototype: dict, rng: np.random.Generator, size: int) -> np.ndarray:
    coords = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    rotation = math.radians(rng.uniform(-12.0, 12.0))
    zoom = rng.uniform(0.8, 1.25)
    field = np.zeros((size, size), np.float32)
    for angle, frequency, waveform, weight in zip(prototype["angles"], prototype["frequencies"],
                                                   prototype["waveforms"], prototype["weights"]):
        angle = angle + rotation
        k = 2 * math.pi * frequency * zoom
        phase = (k * math.cos(angle)) * coords[None, :] + (k * math.sin(angle)) * coords[:, None]
        field += weight * _wave(phase + rng.uniform(0, 2 * math.pi), int(waveform))
    field /= np.abs(field).max() + 1e-6
    noise = rng.standard_normal(field.shape, dtype=np.float32)
    noise *= np.float32(rng.uniform(0.0, 0.3))  # pattern noise
    field += noise
    t = np.clip(field * 0.5 + 0.5, 0.0, 1.0)[..., None]
    low, high = (c.astype(np.float32) for c in _colour_pair(rng, min_contrast=50.0))
    pixels = low + t * (high - low)
    image = Image.fromarray(pixels.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    # Clutter on top: occluding blobs in random colours (textures have no separate background).
    for _ in range(int(rng.integers(1, 5))):
        x, y = rng.uniform(0, size, 2)
        radius = rng.uniform(0.04, 0.15) * size
        draw.ellipse([x - radius, y - radius, x + radius, y + radius],
                     fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    return _finish(rng, image)


# ----------------------------------------------------------------------------- shapes
_PRIMITIVES = ("circle", "square", "triangle", "pentagon", "star", "ring", "cross")


def shape_prototype(rng: np.random.Generator) -> dict:
    """Two to four primitives, each with a kind, a centre, a size, an angle and fill/outline."""
    count = int(rng.integers(2, 5))
    return {
        "kinds": rng.integers(0, len(_PRIMITIVES), count),
        "centres": rng.uniform(-0.6, 0.6, (count, 2)),
        "sizes": rng.uniform(0.2, 0.45, count),
        "angles": rng.uniform(0, 2 * math.pi, count),
        "filled": rng.random(count) < 0.5,
    }


def _polygon(sides: int, angle: float, star: bool = False) -> np.ndarray:
    count = sides * 2 if star else sides
    theta = angle + np.arange(count) * 2 * math.pi / count
    radius = np.where(np.arange(count) % 2 == 1, 0.45, 1.0) if star else np.ones(count)
    return np.stack([np.cos(theta) * radius, np.sin(theta) * radius], -1)


def _primitive_outline(kind: str, angle: float) -> np.ndarray:
    """Unit-size outline polygon of a primitive (circles and rings are 32-gons)."""
    if kind in ("circle", "ring"):
        return _polygon(32, angle)
    if kind == "square":
        return _polygon(4, angle + math.pi / 4)
    if kind == "triangle":
        return _polygon(3, angle)
    if kind == "pentagon":
        return _polygon(5, angle)
    if kind == "star":
        return _polygon(5, angle, star=True)
    # cross: twelve corners of a plus sign
    a, b = 1.0, 0.33
    corners = np.array([[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b], [b, a], [-b, a], [-b, b],
                        [-a, b], [-a, -b], [-b, -b]])
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return corners @ rotation.T


def render_shapes(prototype: dict, rng: np.random.Generator, size: int) -> np.ndarray:
    image, draw, background, _, transform, scale = _scene(rng, size, max_rotation=30.0)
    width = max(1, int(round(0.1 * scale)))
    for kind, centre, part_size, angle, filled in zip(prototype["kinds"], prototype["centres"],
                                                      prototype["sizes"], prototype["angles"],
                                                      prototype["filled"]):
        while True:  # each part gets its own colour, always visible against the background
            colour = rng.integers(0, 256, 3)
            if abs(_luma(colour) - _luma(background)) >= 60:
                break
        colour = tuple(int(c) for c in colour)
        kind_name = _PRIMITIVES[int(kind)]
        outline = _primitive_outline(kind_name, angle + rng.normal(0, 0.1))
        part = centre + rng.normal(0, 0.04, 2) + outline * part_size * rng.uniform(0.85, 1.15)
        points = [tuple(p) for p in transform(part)]
        if kind_name == "ring" or not filled:
            draw.polygon(points, outline=colour, width=width)
        else:
            draw.polygon(points, fill=colour)
    return _finish(rng, image)


# ----------------------------------------------------------------------------- sources
_SOURCES: Dict[str, tuple] = {
    "glyphs": (glyph_prototype, render_glyph),
    "textures": (texture_prototype, render_texture),
    "shapes": (shape_prototype, render_shapes),
}


def available_sources() -> List[str]:
    return sorted(_SOURCES)


def _source(source: str) -> tuple:
    if source not in _SOURCES:
        raise ConfigError(f"Unknown synthetic source {source!r}; expected one of {available_sources()}.")
    return _SOURCES[source]


def class_prototype(source: str, seed: int, class_id: int) -> dict:
    """The parameters that define class ``class_id`` of ``source``."""
    make_prototype, _ = _source(source)
    return make_prototype(_rng(seed, source, class_id, _PROTOTYPE_STREAM))


def _check_image_size(image_size) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) \
            or not 8 <= image_size <= MAX_IMAGE_SIZE:
        raise ConfigError(f"Synthetic image_size must be an integer in [8, {MAX_IMAGE_SIZE}]; got {image_size!r}.")


def render_image(source: str, seed: int, class_id: int, index: int, image_size: int = DEFAULT_IMAGE_SIZE,
                 prototype: dict | None = None) -> np.ndarray:
    """Image ``index`` of class ``class_id``: uint8 pixels [image_size, image_size, 3]."""
    _, render = _source(source)
    _check_image_size(image_size)
    if prototype is None:
        prototype = class_prototype(source, seed, class_id)
    return render(prototype, _rng(seed, source, class_id, _IMAGE_STREAM, index), int(image_size))


def encode_jpeg(pixels: np.ndarray, quality: int = DEFAULT_JPEG_QUALITY) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def class_images(source: str, seed: int, class_id: int, num_images: int,
                 image_size: int = DEFAULT_IMAGE_SIZE, jpeg_quality: int = DEFAULT_JPEG_QUALITY) -> List[bytes]:
    """JPEG bytes of the first ``num_images`` images of one class (a picklable unit of work)."""
    prototype = class_prototype(source, seed, class_id)
    return [encode_jpeg(render_image(source, seed, class_id, index, image_size, prototype), jpeg_quality)
            for index in range(num_images)]


def class_name(source: str, class_id: int) -> str:
    return f"{source}_{class_id:04d}"


def _split_counts(classes_per_split) -> tuple:
    counts = tuple(int(c) for c in classes_per_split)
    if len(counts) != 3 or min(counts) < 0 or sum(counts) == 0:
        raise ConfigError("classes_per_split must be three non-negative class counts (TRAIN, VALID, TEST), "
                         f"not all zero; got {classes_per_split!r}.")
    return counts


def plan_synthetic_dataset(output_dir: str, source: str, image_size: int = DEFAULT_IMAGE_SIZE,
                           classes_per_split: Sequence[int] = DEFAULT_CLASSES_PER_SPLIT,
                           images_per_class: int = DEFAULT_IMAGES_PER_CLASS, seed: int = 0,
                           jpeg_quality: int = DEFAULT_JPEG_QUALITY) -> writer.DatasetPlan:
    """The classes of ``source`` to write to ``<output_dir>/<source>``; checks every argument."""
    _source(source)
    _check_image_size(image_size)
    counts = _split_counts(classes_per_split)
    if isinstance(images_per_class, bool) or not isinstance(images_per_class, (int, np.integer)) \
            or images_per_class < writer.MIN_IMAGES_PER_CLASS:
        raise ConfigError(f"images_per_class must be an integer >= {writer.MIN_IMAGES_PER_CLASS}; "
                         f"got {images_per_class!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"The synthetic data seed must be an integer >= 0; got {seed!r}.")
    if not 1 <= int(jpeg_quality) <= 100:
        raise ConfigError(f"jpeg_quality must be in [1, 100]; got {jpeg_quality!r}.")
    splits = [split for split, count in zip(("TRAIN", "VALID", "TEST"), counts) for _ in range(count)]
    jobs = [writer.ClassJob(class_name(source, class_id), split,
                            functools.partial(class_images, source, int(seed), class_id, int(images_per_class),
                                              int(image_size), int(jpeg_quality)))
            for class_id, split in enumerate(splits)]
    provenance = {"generator": "lite_tf.data.synthetic.procedural", "version": GENERATOR_VERSION, "source": source,
                  "image_size": int(image_size), "images_per_class": int(images_per_class), "seed": int(seed),
                  "jpeg_quality": int(jpeg_quality)}
    return writer.DatasetPlan(os.path.join(os.fspath(output_dir), source), source, jobs, provenance)


@gin.configurable(module="lite_tf.data")
def write_synthetic_dataset(output_dir: str, source: str, image_size: int = DEFAULT_IMAGE_SIZE,
                            classes_per_split: Sequence[int] = DEFAULT_CLASSES_PER_SPLIT,
                            images_per_class: int = DEFAULT_IMAGES_PER_CLASS, seed: int = 0,
                            jpeg_quality: int = DEFAULT_JPEG_QUALITY, workers: Optional[int] = None,
                            progress: bool = True) -> writer.WriteReport:
    """Writes source ``source`` to ``<output_dir>/<source>`` (records + spec); returns the report.

    Idempotent: a folder already holding the same generated data is left as it is; an interrupted
    run is completed; a folder holding anything else is refused (writer.DatasetWriteError).
    ``workers`` (default: CPU count) processes render classes in parallel.
    """
    plan = plan_synthetic_dataset(output_dir, source, image_size, classes_per_split, images_per_class, seed,
                                  jpeg_quality)
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    return plan.write(workers=workers, parallel="process", progress=progress)


__all__: Sequence[str] = ("available_sources", "class_prototype", "render_image", "class_images", "encode_jpeg",
                          "plan_synthetic_dataset", "write_synthetic_dataset", "GENERATOR_VERSION",
                          "DEFAULT_IMAGE_SIZE")

"""ORBIT extra annotations (orbit_extra_annotations.zip): per-frame bounding boxes and quality issues.

Layout (as the official README and data/datasets.py read it): ``<root>/annotations/<split>/
<video>.json``, one JSON per video, keyed by frame file name (``<video>-00001.jpg``). Clutter frames
have ``object_bounding_box`` ({x, y, w, h} in the original 1080x1080 frame, or null) and
``object_not_present_issue``; clean frames have the 7 quality issues (true / false / null).

Filters (``--*_filter_context`` / ``--*_filter_target``) keep a frame when any criterion holds: an
issue name holds when the issue is true, ``no_<issue>`` when it is false (null matches neither);
``no_issues`` stands for every ``no_<issue>``, ``mixed_issues`` for every issue.
"""
from __future__ import annotations

import json
import os
from typing import Dict, Iterable, Optional, Tuple

import numpy as np

from lite_tf.errors import ConfigError, DataError

FRAME_ISSUES = ("object_not_present_issue", "framing_issue", "viewpoint_issue", "blur_issue", "occlusion_issue",
                "overexposed_issue", "underexposed_issue")
NEGATED_ISSUES = tuple(f"no_{issue}" for issue in FRAME_ISSUES)
BOUNDING_BOX = "object_bounding_box"
ORIGINAL_FRAME_SIZE = 1080
FILTER_OPTIONS = FRAME_ISSUES + NEGATED_ISSUES + ("no_issues", "mixed_issues")


def expand_filters(criteria: Iterable[str], name: str = "filter") -> Tuple[str, ...]:
    """Validated, sorted criteria with ``no_issues`` / ``mixed_issues`` expanded (as HEAD's args.py)."""
    if isinstance(criteria, str):
        raise ConfigError(f"{name} must be a list of criteria, not the string {criteria!r}.")
    criteria = tuple(criteria)
    for criterion in criteria:
        if criterion not in FILTER_OPTIONS:
            raise ConfigError(f"{name}: unknown annotation criterion {criterion!r}; expected one of {FILTER_OPTIONS}.")
    if "no_issues" in criteria:
        return NEGATED_ISSUES
    if "mixed_issues" in criteria:
        return FRAME_ISSUES
    return tuple(sorted(set(criteria)))


def annotation_dir(root: str, split: str) -> str:
    return os.path.join(root, "annotations", split)


class Annotations:
    """Reads (once) and caches the annotation file of each video of one split."""

    def __init__(self, root: str, split: str):
        self.directory = annotation_dir(root, split)
        if not os.path.isdir(self.directory):
            raise DataError(f"ORBIT annotation folder {self.directory} does not exist; unzip "
                            "orbit_extra_annotations.zip into <root>/annotations/ (a protocol with annotation "
                            "filters needs it).")
        self._videos: Dict[str, Dict[str, dict]] = {}

    def video(self, name: str) -> Dict[str, dict]:
        if name not in self._videos:
            path = os.path.join(self.directory, f"{name}.json")
            try:
                with open(path) as stream:
                    data = json.load(stream)
            except FileNotFoundError:
                raise DataError(f"ORBIT annotation file {path} is missing (video {name}).") from None
            except (OSError, ValueError) as error:
                raise DataError(f"ORBIT annotation file {path} is not readable JSON: {error}") from None
            if not isinstance(data, dict):
                raise DataError(f"ORBIT annotation file {path} must map frame names to annotations; "
                                f"got {type(data).__name__}.")
            self._videos[name] = data
        return self._videos[name]

    def frame(self, video: str, frame_name: str) -> dict:
        frames = self.video(video)
        if frame_name not in frames:
            raise DataError(f"ORBIT annotation file {os.path.join(self.directory, video + '.json')} has no entry "
                            f"for frame {frame_name}.")
        return frames[frame_name]

    def keep(self, video, criteria: Tuple[str, ...]) -> np.ndarray:
        """Positions (into ``video.numbers``) of the frames that satisfy any of ``criteria``."""
        if not criteria:
            return np.arange(video.num_frames)
        names = [os.path.basename(p) for p in video.frame_paths("")]
        return np.asarray([i for i, name in enumerate(names)
                           if matches(self.frame(video.name, name), criteria)], dtype=np.int64)

    def bounding_box(self, video: str, frame_name: str, frame_size: int) -> Optional[np.ndarray]:
        """[x, y, w, h] scaled to ``frame_size`` and clamped into the frame (as HEAD), or None."""
        box = self.frame(video, frame_name).get(BOUNDING_BOX)
        return scale_box(box, frame_size) if box is not None else None


def matches(frame_annotations: dict, criteria: Tuple[str, ...]) -> bool:
    """True when any criterion holds for the frame (see module docstring)."""
    present = {issue for issue, value in frame_annotations.items() if value is True}
    present |= {f"no_{issue}" for issue, value in frame_annotations.items() if value is False}
    return bool(present & set(criteria))


def scale_box(box: dict, frame_size: int) -> np.ndarray:
    values = np.asarray([box["x"], box["y"], box["w"], box["h"]], dtype=np.float64)
    scaled = (values / ORIGINAL_FRAME_SIZE * frame_size).astype(np.int64)  # truncation, as torch .int()
    scaled[:2] = np.clip(scaled[:2], 0, frame_size - 1)
    scaled[2:] = np.clip(scaled[2:], 1, frame_size)
    return scaled

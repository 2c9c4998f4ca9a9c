"""Index of an ORBIT folder, built once and cached as JSON.

Layout: ``<root>/<split>/<user>/<object>/{clean,clutter}/<video>/<video>-NNNNN.jpg`` (jpg, jpeg or
png frames). Listing millions of frame files on every run is slow, so the index stores, per video,
its frame numbers compactly, and is written atomically to a cache file. The cache is reused while
the folder's fingerprint holds: the modification times of every directory down to the video folders
(adding, removing or renaming a frame changes its video folder's time). Stat-ing a few thousand
directories is cheap; the frame files are listed only when that fingerprint changes.

Problems never produce a silently wrong task. A missing split folder raises. Everything else is
skipped, counted in ``SplitIndex.problems`` and logged (``strict=True`` raises instead):
non-image files and images not named ``<video>-NNNNN.<ext>`` in a video folder (ignored), a video
folder with no frames (video skipped), an unknown folder in place of clean/clutter (ignored),
an object with no clean video (object skipped: it could never be in a context set), a user left
with no object (user skipped). A user with one object stays (counted as ``users_with_one_object``):
the official code evaluates them on 1-way tasks; training tasks skip them (lite_tf/data/orbit/tasks.py). Frame-number gaps are kept
(the frames are used in numeric order) and counted as ``frame_gaps``; ``gaps="error"`` raises.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Tuple

import numpy as np

from lite_tf import atomic
from lite_tf.errors import ConfigError, DataError

SPLITS = ("train", "validation", "test")
VIDEO_TYPES = ("clean", "clutter")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
INDEX_VERSION = 2
_LOG = logging.getLogger(__name__)


class OrbitDataError(DataError):
    """An ORBIT folder that does not follow the expected layout (the message names the path)."""


class MissingSplitError(OrbitDataError, FileNotFoundError):
    """The ``<root>/<split>`` folder does not exist."""


@dataclasses.dataclass
class Video:
    """One video folder: frame ``i`` is ``<dir>/<name>-<numbers[i]:0{digits}d><ext>``."""

    name: str
    directory: str  # relative to the split folder
    numbers: np.ndarray  # sorted frame numbers, int64
    digits: int
    ext: str

    @property
    def num_frames(self) -> int:
        return int(self.numbers.size)

    def frame_paths(self, split_dir: str, positions=None) -> List[str]:
        numbers = self.numbers if positions is None else self.numbers[np.asarray(positions, dtype=np.int64)]
        base = os.path.join(split_dir, self.directory, self.name)
        return [f"{base}-{int(n):0{self.digits}d}{self.ext}" for n in numbers]

    def to_json(self) -> dict:
        numbers = self.numbers
        entry = {"name": self.name, "dir": self.directory, "digits": self.digits, "ext": self.ext}
        if numbers.size and numbers[-1] - numbers[0] + 1 == numbers.size:
            entry.update(first=int(numbers[0]), count=int(numbers.size))  # contiguous: compact
        else:
            entry["numbers"] = numbers.tolist()
        return entry

    @classmethod
    def from_json(cls, entry: dict) -> "Video":
        if "numbers" in entry:
            numbers = np.asarray(entry["numbers"], dtype=np.int64)
        else:
            numbers = np.arange(entry["first"], entry["first"] + entry["count"], dtype=np.int64)
        return cls(entry["name"], entry["dir"], numbers, entry["digits"], entry["ext"])


@dataclasses.dataclass
class SplitIndex:
    """The usable users of one split: users[user][object] = {"clean": [Video], "clutter": [Video]}."""

    split_dir: str
    users: Dict[str, Dict[str, Dict[str, List[Video]]]]
    problems: Dict[str, int]  # kind -> count of skipped / flagged items
    examples: Dict[str, List[str]]  # kind -> a few offending paths

    @property
    def user_names(self) -> List[str]:
        return sorted(self.users)

    def objects(self, user: str) -> List[str]:
        return sorted(self.users[user])

    def num_frames(self) -> int:
        return sum(v.num_frames for objects in self.users.values() for types in objects.values()
                   for videos in types.values() for v in videos)

    def describe(self) -> str:
        objects = sum(len(o) for o in self.users.values())
        videos = sum(len(v) for o in self.users.values() for t in o.values() for v in t.values())
        text = (f"{self.split_dir}: {len(self.users)} users, {objects} objects, {videos} videos, "
                f"{self.num_frames()} frames")
        if self.problems:
            text += "; skipped/flagged: " + ", ".join(f"{k}={v}" for k, v in sorted(self.problems.items()))
        return text


# ---------------------------------------------------------------- scanning
def _subdirs(path: str) -> List[os.DirEntry]:
    with os.scandir(path) as entries:
        return sorted((e for e in entries if e.is_dir() and not e.name.startswith(".")), key=lambda e: e.name)


def _video_dirs(split_dir: str):
    """Yields (user, object, type_name, video, entry_or_None) for every folder under the split."""
    for user in _subdirs(split_dir):
        yield user.name, None, None, None, user
        for obj in _subdirs(user.path):
            yield user.name, obj.name, None, None, obj
            for kind in _subdirs(obj.path):
                yield user.name, obj.name, kind.name, None, kind
                if kind.name not in VIDEO_TYPES:
                    continue
                for video in _subdirs(kind.path):
                    yield user.name, obj.name, kind.name, video.name, video


def fingerprint(split_dir: str) -> str:
    """Hash of every directory (down to video folders) with its modification time."""
    digest = hashlib.sha1()
    digest.update(str(os.stat(split_dir).st_mtime_ns).encode())
    for *_, entry in _video_dirs(split_dir):
        digest.update(f"{os.path.relpath(entry.path, split_dir)}\0{entry.stat().st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _scan_video(path: str, name: str) -> Tuple[Optional[np.ndarray], int, str, int, List[str]]:
    """(numbers, digits, ext, gaps, ignored file names) of one video folder."""
    pattern = re.compile(re.escape(name) + r"-(\d+)(\.[A-Za-z]+)$")
    numbers, ignored, digits, extensions = [], [], set(), set()
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_file():
                continue
            match = pattern.match(entry.name)
            if match is None or match.group(2).lower() not in IMAGE_EXTENSIONS:
                ignored.append(entry.name)
                continue
            numbers.append(int(match.group(1)))
            digits.add(len(match.group(1)))
            extensions.add(match.group(2))
    if not numbers:
        return None, 0, "", 0, ignored
    if len(digits) != 1 or len(extensions) != 1:
        raise OrbitDataError(
            f"Video folder {path} mixes frame name formats (digits {sorted(digits)}, extensions "
            f"{sorted(extensions)}); expected one pattern <video>-NNNNN.jpg.")
    numbers = np.sort(np.asarray(numbers, dtype=np.int64))
    gaps = int(np.sum(np.diff(numbers) > 1))
    return numbers, digits.pop(), extensions.pop(), gaps, ignored


def scan_split(split_dir: str, gaps: str = "warn", strict: bool = False, num_threads: int = 16) -> SplitIndex:
    """Lists every frame under ``split_dir`` (no cache); see the module docstring for skips."""
    if gaps not in ("warn", "error"):
        raise ConfigError(f"gaps must be 'warn' or 'error'; got {gaps!r}.")
    problems: Dict[str, int] = collections.Counter()
    examples: Dict[str, List[str]] = collections.defaultdict(list)

    def flag(kind: str, path: str, message: str):
        if strict:
            raise OrbitDataError(f"{path}: {message}")
        problems[kind] += 1
        if len(examples[kind]) < 5:
            examples[kind].append(os.path.relpath(path, split_dir))

    tree: Dict[str, Dict[str, Dict[str, List[Tuple[str, str]]]]] = {}
    for user, obj, kind, video, entry in _video_dirs(split_dir):
        if obj is None:
            tree[user] = {}
        elif kind is None:
            tree[user][obj] = {t: [] for t in VIDEO_TYPES}
        elif video is None:
            if kind not in VIDEO_TYPES:
                flag("unknown_folders", entry.path, f"unknown folder {kind!r}; expected {VIDEO_TYPES}")
        else:
            tree[user][obj][kind].append((video, entry.path))

    jobs = [(u, o, t, name, path) for u, objs in tree.items() for o, types in objs.items()
            for t, videos in types.items() for name, path in videos]
    with ThreadPoolExecutor(max(1, num_threads)) as pool:
        scans = list(pool.map(lambda job: _scan_video(job[4], job[3]), jobs))

    users: Dict[str, Dict[str, Dict[str, List[Video]]]] = {}
    for (user, obj, kind, name, path), (numbers, digits, ext, gap_count, ignored) in zip(jobs, scans):
        objects = users.setdefault(user, {})
        types = objects.setdefault(obj, {t: [] for t in VIDEO_TYPES})
        for file_name in ignored:
            flag("ignored_files", os.path.join(path, file_name), "not a frame named <video>-NNNNN.jpg/png")
        if numbers is None:
            flag("empty_videos", path, "video folder has no frames")
            continue
        if gap_count:
            if gaps == "error":
                raise OrbitDataError(f"Video folder {path} has {gap_count} gap(s) in its frame numbering.")
            flag("frame_gaps", path, f"{gap_count} gap(s) in frame numbering")
        types[kind].append(Video(name, os.path.relpath(path, split_dir), numbers, digits, ext))

    usable: Dict[str, Dict[str, Dict[str, List[Video]]]] = {}
    for user in sorted(tree):
        objects = {}
        for obj in sorted(tree[user]):
            types = users.get(user, {}).get(obj, {t: [] for t in VIDEO_TYPES})
            if not types["clean"]:
                flag("objects_without_clean_video", os.path.join(split_dir, user, obj),
                     "object has no clean video with frames")
                continue
            if not types["clutter"]:
                problems["objects_without_clutter_video"] += 1  # usable; just no CLU-VE target
            objects[obj] = types
        if not objects:
            flag("users_without_objects", os.path.join(split_dir, user), "user has no usable object")
            continue
        if len(objects) == 1:  # usable: 1-way evaluation tasks, as the official code; not a strict error
            problems["users_with_one_object"] += 1
            if len(examples["users_with_one_object"]) < 5:
                examples["users_with_one_object"].append(user)
        usable[user] = objects
    return SplitIndex(split_dir, usable, dict(problems), dict(examples))


# ---------------------------------------------------------------- cache
def _to_json(index: SplitIndex, print_: str) -> dict:
    return {
        "version": INDEX_VERSION, "split_dir": os.path.abspath(index.split_dir), "fingerprint": print_,
        "problems": index.problems, "examples": index.examples,
        "users": {u: {o: {t: [v.to_json() for v in vids] for t, vids in types.items()}
                      for o, types in objs.items()} for u, objs in index.users.items()},
    }


def _from_json(data: dict, split_dir: str) -> SplitIndex:
    users = {u: {o: {t: [Video.from_json(v) for v in vids] for t, vids in types.items()}
                 for o, types in objs.items()} for u, objs in data["users"].items()}
    return SplitIndex(split_dir, users, dict(data["problems"]), {k: list(v) for k, v in data["examples"].items()})


def default_cache_dir() -> str:
    return os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "lite_tf", "orbit")


def index_cache_path(split_dir: str, cache_dir: Optional[str] = None) -> str:
    """Cache file of one split folder: named after the folder's absolute path."""
    split_dir = os.path.abspath(split_dir)
    key = hashlib.sha1(split_dir.encode()).hexdigest()[:16]
    return os.path.join(cache_dir or default_cache_dir(), f"orbit-{os.path.basename(split_dir)}-{key}.json")


def _write_atomically(path: str, data: dict) -> None:
    atomic.write_json(path, data, separators=(",", ":"))


def load_split(root: str, split: str, cache_dir: Optional[str] = None, use_cache: bool = True,
               gaps: str = "warn", strict: bool = False) -> SplitIndex:
    """The index of ``<root>/<split>``, from the cache when its fingerprint still matches.

    The index is cached only for the default policies (gaps="warn", strict=False): the stricter
    ones always rescan so they can raise.
    """
    if split not in SPLITS:
        raise OrbitDataError(f"Unknown ORBIT split {split!r}; expected one of {SPLITS}.")
    split_dir = os.path.join(root, split)
    if not os.path.isdir(split_dir):
        raise MissingSplitError(
            f"ORBIT split folder {split_dir} does not exist; expected <root>/{{{','.join(SPLITS)}}}/<user>/"
            "<object>/{clean,clutter}/<video>/<video>-NNNNN.jpg.")
    cacheable = use_cache and gaps == "warn" and not strict
    print_ = fingerprint(split_dir)
    path = index_cache_path(split_dir, cache_dir)
    if cacheable and os.path.isfile(path):
        try:
            with open(path) as stream:
                data = json.load(stream)
            if data.get("version") == INDEX_VERSION and data.get("fingerprint") == print_:
                index = _from_json(data, split_dir)
                _log_problems(index)
                return index
        except (OSError, ValueError, KeyError) as error:  # a corrupt cache is rebuilt, not fatal
            _LOG.warning("Ignoring unreadable ORBIT index cache %s: %s", path, error)
    index = scan_split(split_dir, gaps=gaps, strict=strict)
    _log_problems(index)
    if cacheable:
        _write_atomically(path, _to_json(index, print_))
    return index


def _log_problems(index: SplitIndex) -> None:
    for kind, count in sorted(index.problems.items()):
        _LOG.warning("ORBIT %s: %d %s (e.g. %s)", index.split_dir, count, kind.replace("_", " "),
                     ", ".join(index.examples.get(kind, [])) or "-")

"""The manifest beside a record set (``lite_tf_manifest.json``): what the folder holds, and what
each class file was made from.

- identity: dataset name, class list with splits, and a description of the input and options
  (``provenance``). A later run whose identity differs is refused (it would mix two datasets).
- ``written``: per class id, the record count of its file and a digest of its source files' sizes
  and modification times (``sources``; ``None`` where the input has no files, e.g. TFDS or
  generated data). A class file whose entry is missing, whose count differs, or whose sources
  changed since is rewritten by the next run (writer.py); ``--verify`` reports it.

The manifest is rewritten atomically after every class file (it stays small: one digest per class,
not one entry per image), so a kill at any moment leaves either the old or the new manifest, and a
class file that is newer than its entry is simply rewritten.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Iterable, Optional, Sequence, Tuple

from lite_tf import atomic
from lite_tf.data.metadataset import spec as spec_lib
from lite_tf.data.writing.errors import DatasetWriteError

MANIFEST_FILE = "lite_tf_manifest.json"
MANIFEST_FORMAT = 2
_NOT_IDENTITY = ("format", "written")

FileStat = Tuple[str, int, int]  # (path relative to the input root, size in bytes, mtime in ns)


def make_manifest(name: str, classes: Sequence[Tuple[str, spec_lib.Split]], provenance: dict) -> dict:
    """A new manifest (nothing written yet) for these (class name, split) pairs, in class-id order."""
    return {
        "format": MANIFEST_FORMAT,
        "name": name,
        "provenance": json.loads(json.dumps(provenance)),  # normalised (tuples -> lists)
        "classes": [[class_name, spec_lib.Split.of(split).value] for class_name, split in classes],
        "written": {},
    }


def identity(manifest: dict) -> dict:
    """The part that decides whether a folder holds the same dataset."""
    return {k: v for k, v in manifest.items() if k not in _NOT_IDENTITY}


def _short(value, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...}"


def describe_difference(old: dict, new: dict) -> str:
    """What differs between two identities, for the refusal message."""
    if old.get("name") != new.get("name"):
        return f"dataset name {old.get('name')!r} != {new.get('name')!r}"
    old_p, new_p = old.get("provenance", {}), new.get("provenance", {})
    keys = sorted(k for k in set(old_p) | set(new_p) if old_p.get(k) != new_p.get(k))
    if keys:
        return "; ".join(f"{k}: existing {_short(old_p.get(k))}, requested {_short(new_p.get(k))}"
                         for k in keys[:5])
    old_c, new_c = old.get("classes", []), new.get("classes", [])
    if len(old_c) != len(new_c):
        return f"{len(old_c)} classes existing, {len(new_c)} requested"
    for i, (a, b) in enumerate(zip(old_c, new_c)):
        if list(a) != list(b):
            return f"class {i} is {a} existing, {b} requested"
    return "manifest keys differ"


def read_manifest(dataset_dir: str) -> Optional[dict]:
    """The folder's manifest, or None if it has none; raises DatasetWriteError if unreadable."""
    path = os.path.join(os.fspath(dataset_dir), MANIFEST_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        raise DatasetWriteError(f"Cannot read {path} ({error}); delete {dataset_dir} to start again.") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("written", {}), dict):
        raise DatasetWriteError(f"{path} is not a lite_tf manifest; delete {dataset_dir} to start again.")
    manifest.setdefault("written", {})  # format 1 had no per-class entries
    return manifest


def write_manifest(dataset_dir: str, manifest: dict) -> None:
    atomic.write_json(os.path.join(os.fspath(dataset_dir), MANIFEST_FILE), manifest, indent=1)


def class_entry(manifest: dict, class_id: int) -> Optional[dict]:
    return manifest.get("written", {}).get(str(int(class_id)))


def set_class_entry(manifest: dict, class_id: int, records: int, sources: Optional[str], skipped: int) -> None:
    manifest.setdefault("written", {})[str(int(class_id))] = {"records": int(records), "sources": sources,
                                                              "skipped": int(skipped)}


def file_stat(path: str, root: str, stat: Optional[os.stat_result] = None) -> FileStat:
    """(relative path, size, mtime_ns) of a source file; (-1, -1) if it cannot even be stat'ed."""
    relative = os.path.relpath(path, root)
    if stat is None:
        try:
            stat = os.stat(path)
        except OSError:
            return relative, -1, -1
    return relative, int(stat.st_size), int(stat.st_mtime_ns)


def sources_digest(stats: Iterable[FileStat]) -> str:
    """One digest of a class's source files (order-independent)."""
    text = json.dumps(sorted([list(s) for s in stats]))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def folder_digest(paths: Sequence[str], root: str) -> str:
    """The digest of files as they are on disk now (compared with the one taken when they were read)."""
    return sources_digest(file_stat(p, root) for p in paths)

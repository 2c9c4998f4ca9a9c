"""Atomic file writes: a reader (or a crashed run) sees the old file or the complete new one, never
a half-written one. Used for specs, record files, indexes, checkpoints' side files and results."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once, at import: os.umask is process-wide, racy once threads write


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside ``path``; on success it is flushed to disk and renamed over
    ``path`` (with normal permissions), on any error it is removed."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".tmp-{os.path.basename(path)}-", dir=folder)
    os.close(handle)
    try:
        yield temporary
        with open(temporary, "rb+") as stream:
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o666 & ~_UMASK)
        os.replace(temporary, path)
    except BaseException as error:
        if os.path.exists(temporary):
            os.remove(temporary)
        if isinstance(error, OSError) and not error.filename:  # e.g. a full disk: say which file
            error.filename = path
        raise


def write_text(path, text: str) -> None:
    with atomic_path(path) as temporary:
        with open(temporary, "w") as stream:
            stream.write(text)


def write_json(path, data, **dump_kwargs) -> None:
    with atomic_path(path) as temporary:
        with open(temporary, "w") as stream:
            json.dump(data, stream, **dump_kwargs)
            if dump_kwargs.get("indent") is not None:
                stream.write("\n")

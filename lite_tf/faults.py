"""Low-level failures told as one line: a full disk, and TensorFlow's op-dump messages.

A full disk reaches lite_tf in several shapes: ``OSError`` with errno ENOSPC or EDQUOT (Python
writes, the model-dir lock), an ``OSError`` from h5py whose text says so (Keras weights files), and
TensorFlow's ``ResourceExhaustedError`` ("...; No space left on device", from checkpoints, the
TensorBoard events writer and record files). :func:`disk_full` recognises all of them and names
the file the user knows (not the temporary it was being written as). :func:`pipeline_assertion`
reads the dataset, class and record out of a pipeline's failed record check, and
:func:`without_libjpeg_lines` keeps libjpeg's own stderr lines out of the way. :func:`clean_tf_message`
strips what TensorFlow wraps round a message (``{{function_node ...}}``, ``[[node ...]]``,
``[Op:...]``, "Detected at node" stacks) and object reprs such as ``<_io.BytesIO object at 0x..>``.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
import threading
from typing import Optional

from lite_tf.errors import LiteTfError

_NO_SPACE_TEXTS = ("No space left on device", "Disk quota exceeded")
_NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(LiteTfError):
    """A write failed because the disk (or the user's quota) is full; names the file and what to do."""


def clean_tf_message(text: str) -> str:
    """``text`` without TensorFlow's op dumps and object addresses, on one line."""
    text = re.sub(r"\{\{function_node [^}]*\}\}", "", text)
    text = re.sub(r"\[\[[^\]]*\]\]", "", text)  # [[{{node ...}}]] / [[IteratorGetNext]]
    text = re.sub(r"\s*\[Op:[^\]]*\](\s*name:\s*\S*)?", "", text)
    text = re.sub(r"Detected at node .*?(?=assertion failed|$)", "", text, flags=re.S)
    text = re.sub(r"<stack traces unavailable>", "", text)
    text = re.sub(r"<_io\.\w+ object at 0x[0-9a-f]+>", "(not a format PIL knows)", text)
    text = re.sub(r"<([\w.]+) object at 0x[0-9a-f]+>", r"a \1", text)
    text = " ".join(text.split())
    return text.strip(" ;:")


def user_path(path: str) -> str:
    """The file a user knows for a temporary one: ``.tmp-<name>-xyz`` and ``.tmp-<pid>-<name>.weights.h5``
    -> ``<name>``,
    ``ckpt-2_temp/part-...`` -> ``ckpt-2``, ``checkpoint.tmp<hex>`` -> ``checkpoint``."""
    folder, name = os.path.split(path)
    match = re.match(r"^\.tmp-\d+-(.+\.weights\.h5)$", name)  # callbacks.BestWeights' temporary
    if match:
        return os.path.join(folder, match.group(1))
    match = re.match(r"^\.tmp-(.+)-[A-Za-z0-9_]+$", name)
    if match:
        return os.path.join(folder, match.group(1))
    match = re.match(r"^(.*?)_temp$", os.path.basename(folder))
    if match:
        return os.path.join(os.path.dirname(folder), match.group(1))
    match = re.match(r"^(checkpoint)\.tmp[0-9a-f]+$", name)
    if match:
        return os.path.join(folder, match.group(1))
    match = re.match(r"^(.+)\.tmp(\.weights\.h5)$", name)  # lite_tf.weights.runs.save_weights' temporary
    if match:
        return os.path.join(folder, match.group(1) + match.group(2))
    return path


def _file_in(message: str) -> Optional[str]:
    match = re.search(r"\b(?:file)?name = '([^']+)'", message)  # HDF5's error stack (Keras weights files)
    if match:
        return match.group(1)
    for marker in _NO_SPACE_TEXTS:
        match = re.search(r"(/[^\s;'\"]+|[\w.\-]+/[^\s;'\"]+);\s*" + marker, message)
        if match:
            return match.group(1)
    return None


def disk_full(error: BaseException, fallback: Optional[str] = None) -> Optional[str]:
    """The file (``fallback`` if the error names none; '' if neither) ``error`` could not write
    because the disk is full, or None if ``error`` is something else."""
    if isinstance(error, OSError) and error.errno in _NO_SPACE_ERRNOS:
        name = error.filename or _file_in(str(error))
        return user_path(os.fspath(name)) if name else (fallback or "")
    message = getattr(error, "message", None) or str(error)
    if not any(text in message for text in _NO_SPACE_TEXTS):
        return None
    name = _file_in(clean_tf_message(message)) or getattr(error, "filename", None)
    return user_path(name) if name else (fallback or "")


def disk_full_error(error: BaseException, fallback: Optional[str] = None,
                    then: str = "rerun the same command; what was complete is kept") -> Optional[DiskFullError]:
    """A DiskFullError telling what could not be written and ``then`` what to do, or None."""
    path = disk_full(error, fallback)
    if path is None:
        return None
    where = f" writing {path}" if path else ""
    return DiskFullError(f"No space left on device{where}. Free space on that disk (or write elsewhere), then "
                         f"{then}.")


def raise_if_disk_full(error: BaseException, fallback: Optional[str] = None, then: Optional[str] = None) -> None:
    """Raises :func:`disk_full_error`'s DiskFullError from ``error`` when it is one (else returns)."""
    replacement = disk_full_error(error, fallback, then) if then else disk_full_error(error, fallback)
    if replacement is not None:
        raise replacement from error


def pipeline_assertion(error: BaseException) -> Optional[str]:
    """The text of a failed ``tf.debugging.Assert`` inside a tf.data pipeline, as one sentence, or None.

    lite_tf's pipelines check records as they read them (damaged image data, a wrong label) and
    say which dataset, class and record; TensorFlow reports that inside a graph-execution dump.
    """
    message = getattr(error, "message", None) or str(error)
    match = re.search(r"assertion failed: (.*)", message)
    if match is None:
        return None
    parts = [part.strip() for part in re.findall(r"\[([^\[\]]*)\]", match.group(1))]
    text = ""
    for part in parts:
        if not part:
            continue
        text += (" " if not text or text.endswith(":") or not part.endswith(":") else "; ") + part
    return text.strip() or None


GRAPPLER_CLASH = re.compile(r"Resource (?:__per_step_\d+/)?(\S+?)/tmp_var/frame:")


def grappler_tmp_var_clash(error: BaseException) -> Optional[str]:
    """One line for TensorFlow's own clash of temporary variables in a step, or None.

    Grappler's memory optimiser rewrites an AddN of three or more inputs into a TemporaryVariable
    accumulated in place when its static estimate of the graph's peak exceeds 80 % of the device's
    memory (memory_optimizer.cc, SchedulingPass); inside a while loop two such variables of the
    same name then exist at once and the step fails with AlreadyExistsError (tensorflow/tensorflow
    issues 23780, 33713). On a CPU the device's memory is the machine's free RAM when the step is
    traced, so whether it happens depends on the other jobs. Seen here (Simple CNAPs + FiLM
    EfficientNet-B0, 224 px) in the query-batch loop when it ran no iteration (all queries in one
    batch); that loop is now built only under ``tf.cond(batches > 1)`` (``EpisodicModel``), with
    which the same step ran. The names are grappler's, not lite_tf's; the public API cannot switch
    that one rewrite off.
    """
    message = getattr(error, "message", None) or str(error)
    if type(error).__name__ != "AlreadyExistsError" or "tmp_var" not in message:
        return None
    match = GRAPPLER_CLASH.search(message)
    node = f"'{match.group(1)}/tmp_var'" if match else "'tmp_var'"
    return (f"TensorFlow's graph optimiser broke this step (grappler's memory optimiser, which rewrites sums "
            f"when it predicts a peak above 80 % of the device's memory, made two temporary variables {node} "
            f"at once: a TensorFlow bug, tensorflow/tensorflow#23780); use a smaller LiteConfig.h or "
            f"EpisodicModel.query_batch_size, or free memory, so that its estimate stays below that.")


# What libjpeg prints itself (fprintf to stderr, whatever TF_CPP_MIN_LOG_LEVEL says) when TensorFlow
# decodes a damaged JPEG, or a JPEG with recoverable defects (a few ImageNet files have them).
LIBJPEG_LINE = re.compile(r"^(Corrupt JPEG data\b|Premature end of JPEG file|Input file read error|Not a JPEG file|"
                          r"Invalid JPEG file structure|Bogus [A-Za-z ]+|Unsupported marker|Huffman table|"
                          r"Quantization table|Empty JPEG image|Warning: unknown JFIF revision|"
                          r"Unsupported JPEG process|Wrong JPEG library version)")


@contextlib.contextmanager
def without_libjpeg_lines():
    """Runs the block with file descriptor 2 passed through a filter that drops libjpeg's own lines.

    The failure itself reaches the user as lite_tf's one line (the pipeline's record check names
    dataset, class and record); every other byte written to stderr is forwarded unchanged.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        read_end, write_end = os.pipe()
    except (OSError, ValueError, AttributeError):  # no usable fd 2 (e.g. an embedding host): leave it
        yield
        return

    def forward():
        pending = b""
        with os.fdopen(read_end, "rb", buffering=0) as source:
            while True:
                chunk = source.read(65536)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                kept = [line for line in lines if not LIBJPEG_LINE.match(line.decode(errors="replace"))]
                if kept:
                    os.write(saved, b"".join(line + b"\n" for line in kept))
        if pending and not LIBJPEG_LINE.match(pending.decode(errors="replace")):
            os.write(saved, pending)

    thread = threading.Thread(target=forward, name="lite_tf-stderr-filter", daemon=True)
    thread.start()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 2)  # closes the pipe's last write end: the thread drains it and stops
        thread.join(timeout=10)
        os.close(saved)

"""The model-dir contract: what a training run writes, who may write it, and what a rerun may change.

A model dir holds one experiment. ``experiment.gin`` is its parsed configuration; a rerun with a
different one is refused, except for the settings in ``RESUMABLE_KEYS`` (with
``resume_with_changes``). A running trainer holds an OS lock (``fcntl.flock`` on ``.lock``), which
the kernel releases on any exit, SIGKILL included. Temporary files a killed writer left behind
(``.tmp-*``, ``checkpoints/ckpt-N_temp/``, ``checkpoints/checkpoint.tmp*``, ``logs/*/.tmp-*/``) are
removed by the next trainer, under the lock.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
from typing import Dict, Optional

from lite_tf import atomic, faults
from lite_tf.errors import ConfigError

EXPERIMENT_FILE = "experiment.gin"
OPERATIVE_FILE = "operative_config.gin"
LOCK_FILE = ".lock"
CHECKPOINTS = "checkpoints"
LOGS = "logs"
BEST_WEIGHTS = "best.weights.h5"
TEMPORARY_PREFIX = ".tmp-"
RERUN = "rerun the same command (it resumes from the last complete checkpoint)"
# Optimisation and logging settings a resumed run may change: none of them changes the model or
# the saved optimizer state (so the checkpoint still restores).
RESUMABLE_KEYS = ("Training.learning_rate", "Training.epochs", "Training.validate_every",
                  "Training.validation_episodes", "Training.image_log_every", "Training.statistics_every")


class ExperimentError(ConfigError):
    """A problem with an experiment's configuration or model dir, found before anything is written."""


def bindings(config_text: str) -> Dict[str, str]:
    """``{key: value text}`` of gin's config string (continuation lines belong to the line above)."""
    statements: Dict[str, str] = {}
    key = None
    for line in config_text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace() and key is not None:
            statements[key] += " " + line.strip()
            continue
        key, _, value = line.partition(" = ")
        key = key.strip()
        statements[key] = value.strip()
    return statements


def _changed_keys(old: Dict[str, str], new: Dict[str, str]) -> list:
    return sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))


def _resumable(key: str, new: Dict[str, str]) -> bool:
    if key in RESUMABLE_KEYS:
        return True
    if "." in key or "/" in key:
        return False
    # A macro: resumable when only resumable keys use it.
    users = [k for k, v in new.items() if re.search(rf"%{re.escape(key)}\b", v)]
    return bool(users) and all(k in RESUMABLE_KEYS for k in users)


class ModelDir:
    """One run's folder; every method that writes must run inside ``lock()``."""

    def __init__(self, path: str):
        if not path:
            raise ExperimentError("--model_dir is required.")
        self.path = path

    def join(self, *names: str) -> str:
        return os.path.join(self.path, *names)

    @property
    def experiment_file(self) -> str:
        return self.join(EXPERIMENT_FILE)

    def recorded_config(self) -> Optional[str]:
        if not os.path.exists(self.experiment_file):
            return None
        with open(self.experiment_file) as handle:
            return handle.read()

    def check(self, config_text: str, resume_with_changes: bool = False) -> list:
        """Refuses a dir that holds something else; returns the changed (resumable) keys. Writes nothing."""
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise ExperimentError(f"--model_dir {self.path!r} is a file, not a folder.")
        existing = self.recorded_config()
        if existing is None:
            leftovers = [n for n in (os.listdir(self.path) if os.path.isdir(self.path) else [])
                         if n != LOCK_FILE and not n.startswith(TEMPORARY_PREFIX)]
            if leftovers:
                raise ExperimentError(f"Model dir {self.path!r} is not empty and holds no {EXPERIMENT_FILE}: "
                                      "not a lite_tf run; use a new --model_dir.")
            return []
        if existing == config_text:
            return []
        old, new = bindings(existing), bindings(config_text)
        changed = _changed_keys(old, new)
        fixed = [key for key in changed if not _resumable(key, new)]
        summary = ", ".join(changed) or "formatting only"
        if fixed:
            raise ExperimentError(
                f"Model dir {self.path!r} holds a different experiment ({self.experiment_file} differs in: "
                f"{', '.join(fixed)}). Use a new --model_dir, or delete the old one to start over; nothing was "
                f"changed. (A resumed run may change only {', '.join(RESUMABLE_KEYS)}.)")
        if not resume_with_changes:
            raise ExperimentError(
                f"Model dir {self.path!r} holds a different experiment ({self.experiment_file} differs in: "
                f"{summary}). These settings may change on resume: rerun with --resume_with_changes.")
        return changed

    @contextlib.contextmanager
    def lock(self):
        """Holds the dir's trainer lock (exclusive, non-blocking); clears stale temporaries first."""
        try:
            os.makedirs(self.path, exist_ok=True)
            descriptor = os.open(self.join(LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            faults.raise_if_disk_full(error, self.join(LOCK_FILE), RERUN)
            raise ExperimentError(f"Cannot write to model dir {self.path!r}: "
                                  f"{error.strerror or error}.") from None
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                owner = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
                raise ExperimentError(f"Model dir {self.path!r} is in use by another trainer (PID {owner}); "
                                      "wait for it to finish, or use another --model_dir.") from None
            try:
                os.ftruncate(descriptor, 0)
                os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
            except OSError as error:
                faults.raise_if_disk_full(error, self.join(LOCK_FILE), RERUN)
                raise
            self.remove_temporaries()
            yield self
        finally:
            os.close(descriptor)  # releases the lock

    def remove_temporaries(self) -> None:
        """Deletes what killed (or disk-full) writers left: .tmp-* files, checkpoints/*_temp folders,
        checkpoints/checkpoint.tmp* files and the .tmp-* folders of unfinished TensorBoard event files."""
        logs = self.join(LOGS)
        log_folders = [os.path.join(logs, n) for n in os.listdir(logs)] if os.path.isdir(logs) else []
        for folder in (self.path, self.join(CHECKPOINTS), *log_folders):
            if not os.path.isdir(folder):
                continue
            for name in os.listdir(folder):
                path = os.path.join(folder, name)
                if name.startswith(TEMPORARY_PREFIX) and os.path.isfile(path):
                    os.remove(path)
                elif folder in log_folders and name.startswith(TEMPORARY_PREFIX) and os.path.isdir(path):
                    shutil.rmtree(path)
                elif folder == self.join(CHECKPOINTS) and name.endswith("_temp") and os.path.isdir(path):
                    shutil.rmtree(path)
                elif folder == self.join(CHECKPOINTS) and re.fullmatch(r"checkpoint\.tmp[0-9a-f]+", name) and os.path.isfile(path):
                    os.remove(path)  # TF's temporary for the checkpoint index (a full disk leaves it)

    def record(self, config_text: str) -> None:
        atomic.write_text(self.experiment_file, config_text)

    def write_operative_config(self, text: str) -> None:
        atomic.write_text(self.join(OPERATIVE_FILE), text)

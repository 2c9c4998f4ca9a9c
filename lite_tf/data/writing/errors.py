"""Errors of the writing package; all are lite_tf DataErrors (one-line, user-facing)."""
from __future__ import annotations

from lite_tf.errors import DataError


class DatasetWriteError(DataError):
    """The output folder cannot be written as asked; the message names the folder and the reason."""


class ConvertError(DataError):
    """Input that cannot be converted; the message names the file, folder, class or key."""


class BadImageError(ConvertError):
    """A file or record that is not a readable image."""

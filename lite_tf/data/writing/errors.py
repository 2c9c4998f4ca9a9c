"""Errors of the writing package (all lite_tf DataErrors: one-line, user-facing), and the reading of user-supplied text files that raises them."""
from __future__ import annotations

import json
import os
from typing import Optional

from lite_tf.errors import DataError


class DatasetWriteError(DataError):
    """The output folder cannot be written as asked; the message names the folder and the reason."""


class ConvertError(DataError):
    """Input that cannot be converted; the message names the file, folder, class or key."""


class BadImageError(ConvertError):
    """A file or record that is not a readable image."""


def read_input_text(path, what: str) -> str:
    """A user-supplied text file (split, hierarchy), or a ConvertError naming it as a ``what`` file."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as error:  # a binary file is not a text input either
        raise ConvertError(f"Cannot read {what} file {path}: {error}") from None


def input_json(text: str, path, what: str) -> Optional[dict]:
    """The JSON object ``text`` holds when it starts with "{" (None otherwise: a text-format file)."""
    if not text.lstrip().startswith("{"):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ConvertError(f"{what.capitalize()} file {os.fspath(path)} is not valid JSON: {error}") from None

"""One error base for everything lite_tf reports to a user.

Launchers catch ``LiteTfError`` and print its message on one line, without a traceback. Every
error the library raises for bad input (a config, a file, a record, a flag) derives from it, so a
tool never needs to know which module failed. Subclasses that were ``ValueError`` before keep that
base too, so existing ``except ValueError`` code still works.
"""
from __future__ import annotations


class LiteTfError(Exception):
    """A problem with the user's input or configuration; the message says what and where."""


class ConfigError(LiteTfError, ValueError):
    """A bad gin binding, flag, experiment or model dir, found before anything is written."""


class DataError(LiteTfError, ValueError):
    """Data that is missing, malformed or does not match its spec; names the file or record."""


class WrongTypeError(LiteTfError, TypeError):
    """A value of the wrong type (an episode tensor's dtype, a non-Learner given as learner, ...)."""


class MissingKeyError(LiteTfError, KeyError):
    """A required key is missing (an episode dict, a state dict); the message names it."""

    def __str__(self):  # KeyError would quote the whole message.
        return self.args[0]

"""What every launcher shares: one-line errors (no traceback) and a console-script entry point."""
from __future__ import annotations

import sys
from typing import Callable, List, Optional, Sequence

from absl import app, flags, logging

from lite_tf import faults
from lite_tf.errors import ConfigError, LiteTfError


def one_line(error: BaseException) -> str:
    """``error: <message>`` on one line (gin's "In call to configurable ..." lines left out)."""
    lines = [line.strip() for line in str(error).splitlines()
             if line.strip() and not line.strip().startswith("In call to configurable")]
    return "error: " + " ".join(lines)


def main_or_error(main: Callable[[list], int]) -> Callable[[list], None]:
    """Wraps ``main(argv) -> status``: a LiteTfError prints ``error: <message>`` and exits 2.

    A full disk anywhere (a launcher that did not say more itself) is one line naming the file too.
    """
    def wrapped(argv):
        if not flags.FLAGS["verbosity"].present:  # absl INFO lines (e.g. TF's per-checkpoint notes) off
            logging.set_verbosity(logging.WARNING)
        try:
            status = main(argv)
        except LiteTfError as error:
            print(one_line(error), file=sys.stderr)
            status = 2
        except Exception as error:  # noqa: BLE001 - only a full disk is reported here; the rest re-raises
            replacement = faults.disk_full_error(error)
            if replacement is None:
                raise
            print(one_line(replacement), file=sys.stderr)
            status = 2
        sys.exit(status or 0)

    return wrapped


def parse_flags(argv: list) -> list:
    """absl's parser, with a bad or missing flag reported on one line (exit status 2)."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def run(define_flags: Callable[[], None], main: Callable[[list], int]) -> None:
    """Defines the tool's flags (only now, so tools can be imported together) and runs ``main``."""
    define_flags()
    app.run(main_or_error(main), flags_parser=parse_flags)


def integers(values: Optional[Sequence[str]], flag: str, what: str = "") -> Optional[List[int]]:
    """A list flag's values as integers (None stays None); ConfigError naming ``--flag`` otherwise."""
    if values is None:
        return None
    try:
        return [int(value) for value in values]
    except ValueError:
        raise ConfigError(f"--{flag} must be integers{' ' + what if what else ''}; got {','.join(values)}.") from None


def no_arguments(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")

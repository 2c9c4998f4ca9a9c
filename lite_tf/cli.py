"""What every launcher shares: one-line errors (no traceback) and a console-script entry point."""
from __future__ import annotations

import sys
from typing import Callable

from absl import app, flags, logging

from lite_tf.errors import LiteTfError


def main_or_error(main: Callable[[list], int]) -> Callable[[list], None]:
    """Wraps ``main(argv) -> status``: a LiteTfError prints ``error: <message>`` and exits 2."""
    def wrapped(argv):
        if not flags.FLAGS["verbosity"].present:  # absl INFO lines (e.g. TF's per-checkpoint notes) off
            logging.set_verbosity(logging.WARNING)
        try:
            status = main(argv)
        except LiteTfError as error:
            # gin appends "In call to configurable ..." lines to errors raised inside configurables.
            lines = [line.strip() for line in str(error).splitlines()
                     if line.strip() and not line.strip().startswith("In call to configurable")]
            print("error: " + " ".join(lines), file=sys.stderr)
            status = 2
        sys.exit(status or 0)

    return wrapped


def run(define_flags: Callable[[], None], main: Callable[[list], int]) -> None:
    """Defines the tool's flags (only now, so tools can be imported together) and runs ``main``."""
    define_flags()
    app.run(main_or_error(main))


def no_arguments(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")

"""Gin's parse errors as one line that names the file, the line and what to do.

Gin reports most mistakes itself (file, line, binding), but an unclosed bracket or string reaches
the caller as Python's ``tokenize.TokenError`` with neither file nor useful line, and a misspelt
plugin (``@learners.protonet()``) as "No configurable matching" without the names that exist.
:func:`explain` turns both into a sentence; the registry lists what is registered.
"""
from __future__ import annotations

import difflib
import io
import re
import tokenize
from typing import Optional, Tuple

_OPENING = {"(": ")", "[": "]", "{": "}"}
# gin module -> registry kind (lite_tf.registry registers plugins as @<kind>s.<name>)
_PLUGIN_MODULES = {"learners": "learner", "backbones": "backbone", "sources": "source", "evaluators": "evaluator"}


def unclosed(text: str) -> Optional[Tuple[int, str]]:
    """(line, what) of the first bracket or string ``text`` never closes, or None if it tokenizes."""
    stack = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.OP and token.string in _OPENING:
                stack.append((token.start[0], token.string))
            elif token.type == tokenize.OP and token.string in _OPENING.values() and stack:
                stack.pop()
    except tokenize.TokenError as error:
        if "string" in str(error.args[0]):
            return error.args[1][0], "a string (quote)"
        if stack:
            line, bracket = stack[-1]
            return line, f"'{bracket}'"
        return error.args[1][0], "a bracket"
    except (SyntaxError, IndentationError):
        return None
    return None


def _tidy(message: str) -> str:
    """Gin's multi-line message on one line, without its caret marker line."""
    lines = [line.strip() for line in message.splitlines() if line.strip() and line.strip() != "^"]
    return " ".join(lines)


def unknown_plugin_hint(message: str) -> str:
    """For "No configurable matching '@learners.protonet()'": the registered names of that kind."""
    match = re.search(r"No configurable matching (?:reference )?'(@?)(\w+)\.(\w+)", message)
    if match is None or match.group(2) not in _PLUGIN_MODULES:
        return ""
    at, module, name = match.groups()
    from lite_tf import registry

    kind = _PLUGIN_MODULES[module]
    known = getattr(registry, f"list_{kind}s")()
    close = difflib.get_close_matches(name, known, n=1)
    guess = f" Did you mean {at}{module}.{close[0]}?" if close else ""
    return f" Registered {kind}s: {', '.join(known) or '(none)'}.{guess}"


def explain(error: BaseException, sources: Tuple[Tuple[str, str], ...]) -> str:
    """One line for a gin parse ``error``; ``sources`` are (name, text) of what was being parsed."""
    if isinstance(error, tokenize.TokenError):
        for name, text in sources:
            found = unclosed(text)
            if found is not None:
                line, what = found
                return (f"{name}, line {line}: {what} is never closed (the text ends first); close it where "
                        f"the value ends.")
        return f"{' / '.join(name for name, _ in sources)}: a bracket or string is never closed ({error.args[0]})."
    message = _tidy(str(error))
    return message + unknown_plugin_hint(message)

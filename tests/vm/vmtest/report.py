"""How the harness talks to the person running it: progress lines, console
tails and one-line failure reasons."""

from __future__ import annotations

import traceback

from .errors import CheckFailed, HarnessError, VMError


#: How much of the console a failure report shows.
TAIL_LINES = 40


def log(msg: str):
    print(msg, flush=True)


def tail_lines(text: str, n: int = TAIL_LINES) -> str:
    lines = text.splitlines()
    return "\n".join(lines[-n:])


def describe_error(e: BaseException) -> tuple[str, str]:
    """(one-line reason, extra details) for a failure."""
    if isinstance(e, (CheckFailed, HarnessError, VMError)):
        return str(e), ""
    if isinstance(e, AssertionError):
        return f"assertion failed: {e}" if str(e) else "assertion failed", traceback.format_exc()
    return f"{type(e).__name__}: {e}", "".join(traceback.format_exception(e))


def join_details(*parts: str) -> str:
    """The non-empty parts, one after another, for a failure's details."""
    return "\n".join(p.rstrip() for p in parts if p and p.strip())

"""Progress output: one line per step with its elapsed time, every command echoed."""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager


def _emit(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def info(message: str) -> None:
    _emit(f"    {message}")


def command(argv: Sequence[str], cwd: str | None = None) -> None:
    """Echo a command, shell-quoted, before it runs."""
    where = f"(in {cwd}) " if cwd else ""
    _emit(f"  $ {where}{shlex.join(argv)}")


@contextmanager
def step(title: str) -> Iterator[None]:
    """Print a start line, then the step's elapsed time, or that it failed."""
    _emit(f"==> {title}")
    start = time.monotonic()
    try:
        yield
    except BaseException:
        _emit(f"<== {title}: failed after {time.monotonic() - start:.1f} s")
        raise
    _emit(f"<== {title}: done in {time.monotonic() - start:.1f} s")


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{size} B"
        value /= 1024
    raise AssertionError("unreachable")

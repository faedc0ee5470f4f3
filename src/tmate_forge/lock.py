"""One run at a time per build folder: two runs in the same tree would corrupt each other."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import BusyError


@contextmanager
def exclusive(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on folder for the block, or fail at once naming the holder.

    The kernel drops the lock when the process ends, however it ends, so a killed run
    never leaves a stale lock behind.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise BusyError(
                f"{folder}: another tmate-forge run (pid {holder}) is building here",
                tip="wait for it to finish, or build in another checkout",
            ) from err
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield

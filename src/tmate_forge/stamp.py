"""Stage stamps: a stage's work is skipped when the digest of its inputs is unchanged."""

from __future__ import annotations

import json
import os
from pathlib import Path


def is_current(stamp: Path, digest: str) -> bool:
    try:
        return bool(json.loads(stamp.read_text())["inputs"] == digest)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def record(stamp: Path, digest: str) -> None:
    """Write the stamp atomically, so an interrupt leaves the old stamp or the new one."""
    stamp.parent.mkdir(parents=True, exist_ok=True)
    partial = stamp.with_name(stamp.name + ".partial")
    partial.write_text(json.dumps({"inputs": digest}) + "\n")
    os.replace(partial, stamp)


def forget(stamp: Path) -> None:
    stamp.unlink(missing_ok=True)

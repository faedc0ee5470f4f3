"""Split a linked executable into a stripped binary and a separate debug file."""

from __future__ import annotations

import platform
import shutil
from pathlib import Path

from .arch import Arch
from .cmd import capture
from .errors import ToolMissingError


def objcopy_for(arch: Arch) -> str:
    """The GNU objcopy that understands arch.

    zig's own objcopy cannot strip aarch64, so binutils does it: the host's objcopy for
    the host's architecture, the cross binutils package for the other.
    """
    candidates = [f"{arch}-linux-gnu-objcopy"]
    if arch == platform.machine():
        candidates.append("objcopy")
    for name in candidates:
        if found := shutil.which(name):
            return found
    package = "binutils" if arch == platform.machine() else f"binutils-{arch}-linux-gnu"
    raise ToolMissingError(
        f"{candidates[0]}: not found on PATH; it is needed to strip the {arch} binary",
        tip=f"install it (Debian: apt-get install {package}), or run scripts/setup-host",
    )


def split_debug(linked: Path, stripped: Path, debug: Path, arch: Arch) -> None:
    """Write debug (symbols and DWARF only) and stripped (linked to debug by name)."""
    objcopy = objcopy_for(arch)
    capture([objcopy, "--only-keep-debug", str(linked), str(debug)])
    capture([objcopy, "--strip-all", f"--add-gnu-debuglink={debug}", str(linked), str(stripped)],
            cwd=debug.parent)  # fmt: skip

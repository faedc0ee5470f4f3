"""Target architectures and their zig / GNU names."""

from __future__ import annotations

import difflib
import platform
from typing import Literal, get_args

from .errors import UsageError

Arch = Literal["x86_64", "aarch64"]
ARCHES: tuple[Arch, ...] = get_args(Arch)


def parse_arch(value: str | None) -> Arch:
    """Return the architecture named by --arch, or the host's when it is left out."""
    name = value if value is not None else platform.machine()
    for arch in ARCHES:
        if name == arch:
            return arch
    close = difflib.get_close_matches(name, ARCHES, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UsageError(
        f"--arch: expected one of {', '.join(ARCHES)}, got {name!r}.{hint}",
        tip="pass --arch x86_64 or --arch aarch64",
    )


def musl_triple(arch: Arch) -> str:
    """The target triple that zig cc and autotools' --host both understand."""
    return f"{arch}-linux-musl"

"""Target architectures and their zig / GNU names."""

from __future__ import annotations

import platform
from typing import Literal, get_args

from .errors import UsageError, did_you_mean

Arch = Literal["x86_64", "aarch64"]
ARCHES: tuple[Arch, ...] = get_args(Arch)


def parse_arch(value: str | None) -> Arch:
    """Return the architecture named by --arch, or the host's when it is left out."""
    name = value if value is not None else platform.machine()
    for arch in ARCHES:
        if name == arch:
            return arch
    raise UsageError(
        f"--arch: expected one of {', '.join(ARCHES)}, got {name!r}{did_you_mean(name, ARCHES)}",
        tip="pass --arch x86_64 or --arch aarch64",
    )


def musl_triple(arch: Arch) -> str:
    """The target triple that zig cc and autotools' --host both understand."""
    return f"{arch}-linux-musl"

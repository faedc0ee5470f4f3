"""The cross toolchain: zig from PyPI as `cc -target ARCH-linux-musl`.

Autotools and CMake want plain program names for CC, AR and RANLIB, so small wrapper
scripts call the zig binary inside the wheel directly (cheaper than `python -m ziglang`,
about 3 s per configure run). zig's own cache, where it builds musl once per target,
lives in the persistent cache so that a fresh checkout does not pay for it again.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from . import log
from .arch import Arch, musl_triple
from .cmd import capture
from .errors import ToolMissingError

# Flags for every C file of every component. Frame pointers, leaf functions included
# (aarch64 omits them there by default), keep the crash handler's stack walk possible.
BASE_CFLAGS = ("-O2", "-g", "-fno-omit-frame-pointer", "-mno-omit-leaf-frame-pointer")


@dataclass(frozen=True, kw_only=True)
class Toolchain:
    arch: Arch
    zig: Path
    version: str
    bin: Path  # the folder with cc, ar and ranlib wrappers
    cache: Path  # ZIG_GLOBAL_CACHE_DIR

    @property
    def triple(self) -> str:
        return musl_triple(self.arch)

    def cflags(self, *, root: Path, build: Path) -> list[str]:
        """The C flags of every component; the prefix maps keep this machine's paths out
        of the output. clang applies the last map that matches, so the wider one (the
        checkout) comes before the narrower ones inside it (the build tree, zig's headers).
        """
        return [
            *BASE_CFLAGS,
            f"-ffile-prefix-map={root}=/src",
            f"-ffile-prefix-map={build}=/build",
            f"-ffile-prefix-map={self.zig.parent}=/zig",
        ]

    def env(self) -> dict[str, str]:
        """The environment every build step of this toolchain runs with."""
        return {
            "CC": str(self.bin / "cc"),
            "AR": str(self.bin / "ar"),
            "RANLIB": str(self.bin / "ranlib"),
            "ZIG_GLOBAL_CACHE_DIR": str(self.cache),
            "ZIG_LOCAL_CACHE_DIR": str(self.cache / "local"),
        }


def zig_binary() -> Path:
    """The zig executable inside the ziglang wheel."""
    try:
        import ziglang
    except ImportError as err:
        pinned = next((r for r in metadata.requires("tmate-forge") or [] if "ziglang" in r), "")
        raise ToolMissingError(
            "ziglang: the Python package is not installed; it provides the cross compiler",
            tip=f"pip install '{pinned or 'ziglang'}' (nox sessions install it for you)",
        ) from err
    return Path(ziglang.__file__).parent / "zig"


def prepare_toolchain(arch: Arch, build: Path, cache: Path) -> Toolchain:
    """Write the wrapper scripts for one architecture and return the toolchain."""
    zig = zig_binary()
    version = capture([str(zig), "version"], echo=False).strip()
    bin_dir = build / "toolchain" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    triple = musl_triple(arch)
    wrappers = {
        "cc": [str(zig), "cc", "-target", triple],
        "ar": [str(zig), "ar"],
        "ranlib": [str(zig), "ranlib"],
    }
    for name, argv in wrappers.items():
        _write_wrapper(bin_dir / name, argv)
    log.info(f"zig {version} for {triple}, cache {cache / 'zig'}")
    return Toolchain(arch=arch, zig=zig, version=version, bin=bin_dir, cache=cache / "zig")


def _write_wrapper(path: Path, argv: list[str]) -> None:
    text = f'#!/bin/sh\nexec {shlex.join(argv)} "$@"\n'
    if path.is_file() and path.read_text() == text:
        return
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.chmod(0o755)
    os.replace(partial, path)


def musl_version(zig: Path) -> str:
    """The version of the musl sources zig builds its libc from (lib/libc/musl)."""
    header = zig.parent / "lib" / "libc" / "musl" / "src" / "internal" / "version.h"
    for line in header.read_text().splitlines():
        if line.startswith("#define VERSION "):
            return line.split('"')[1]
    raise ToolMissingError(f"{header}: no VERSION line; is this zig's musl?",
                           tip="reinstall the pinned ziglang package")  # fmt: skip

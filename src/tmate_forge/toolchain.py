"""The cross toolchain: zig from PyPI as `cc -target ARCH-linux-musl`.

Autotools and CMake want plain program names for CC, AR and RANLIB, so small wrapper
scripts call the zig binary inside the wheel directly (cheaper than `python -m ziglang`,
about 3 s per configure run). zig's own cache, where it builds musl once per target,
lives in the persistent cache so that a fresh checkout does not pay for it again.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from . import log
from .arch import Arch, musl_triple
from .cmd import capture
from .errors import ToolMissingError

# Flags for every C file of every component. Frame pointers, leaf functions included
# (aarch64 omits them there by default), keep the crash handler's stack walk possible.
# -fno-slp-vectorize: the SLP vectorizer of zig 0.17.1's LLVM is not deterministic here.
# Compiled 150 times alike, libssh's kex.c came out with other SSE registers in 20, which
# broke a release's reproducibility; without SLP, 80 of 80 were the same. LLVM has had
# such bugs before: https://github.com/llvm/llvm-project/issues/75987
BASE_CFLAGS = ("-O2", "-g", "-fno-omit-frame-pointer", "-mno-omit-leaf-frame-pointer",
               "-fno-slp-vectorize")  # fmt: skip


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
    installed = zig_binary()
    version = capture([str(installed), "version"], echo=False).strip()
    zig = _stable_zig(installed, version, cache / "toolchain")
    _build_libc(zig, musl_triple(arch), cache)
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


def _stable_zig(installed: Path, version: str, toolchains: Path) -> Path:
    """zig, from one place in the cache whichever virtual environment installed it.

    zig writes its own location into the debug info of the libc it builds, and keys its
    cache of that libc by it; run from each checkout's nox environment, every checkout
    would build and embed a different path. The copy is made of hard links where the
    file system allows, so it costs no space.
    """
    home = toolchains / f"zig-{version}"
    stamp = f"{version} {installed.stat().st_size}\n"
    marker = home / ".tmate-forge-complete"
    if marker.is_file() and marker.read_text() == stamp:
        return home / "zig"
    toolchains.mkdir(parents=True, exist_ok=True)
    log.info(f"zig {version}: {installed.parent} -> {home}")
    # A folder of our own, renamed into place: another run doing the same at the same
    # time is never disturbed, and the one that renames first wins.
    partial = Path(tempfile.mkdtemp(dir=toolchains, prefix=f".zig-{version}."))
    try:
        shutil.copytree(installed.parent, partial / "zig", copy_function=_link_or_copy,
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        (partial / "zig" / marker.name).write_text(stamp)
        if home.exists() and not (marker.is_file() and marker.read_text() == stamp):
            shutil.rmtree(home)  # an incomplete copy, or another build of this version
        with contextlib.suppress(OSError):  # another run renamed its copy first
            os.replace(partial / "zig", home)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return home / "zig"


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _build_libc(zig: Path, triple: str, cache: Path) -> None:
    """Have zig build (or find in its cache) musl for the target, working in /.

    The first program linked for a target builds zig's libc, whose debug info records
    the folder zig ran in. Linking a trivial program from / first makes that folder the
    same for every checkout; later links find the libc in zig's cache.
    """
    scratch = cache / "toolchain" / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    source = scratch / "empty.c"
    source.write_text("int main(void) { return 0; }\n")
    output = scratch / f"empty-{triple}"
    env = {"ZIG_GLOBAL_CACHE_DIR": str(cache / "zig"),
           "ZIG_LOCAL_CACHE_DIR": str(cache / "zig" / "local")}  # fmt: skip
    capture([str(zig), "cc", "-target", triple, "-static", *BASE_CFLAGS, str(source), "-o",
             str(output)], cwd=Path("/"), env=env, echo=False)  # fmt: skip
    output.unlink(missing_ok=True)


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

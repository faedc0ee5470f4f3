"""Build the launcher: our own small C program, linked statically against the same libssh.

It is the image's entrypoint and the Alpine service's command: it makes the host keys,
prints their fingerprints and a client block, and starts tmate-ssh-server. Its source
is launcher/tmate-ssh-server-launch.c; it builds once libssh is in the per-arch prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import log, stamp
from .cmd import logged
from .digest import file_sha256, inputs_digest
from .toolchain import Toolchain

LAUNCHER = "tmate-ssh-server-launch"
LIBS = ("-lssh", "-lmbedtls", "-lmbedx509", "-lmbedcrypto")
# The recipes those libraries come from, for the launcher's SBOM; musl comes with zig.
LINKED_COMPONENTS = ("libssh", "mbedtls")


@dataclass(frozen=True, kw_only=True)
class LauncherConfig:
    source: Path  # launcher/tmate-ssh-server-launch.c
    toolchain: Toolchain
    cflags: tuple[str, ...]
    stable_cflags: tuple[str, ...]  # cflags without machine paths, for the digest
    build: Path  # build/ARCH
    libssh_digest: str  # the inputs digest of libssh and what it links, from compile


def launcher_source(root: Path) -> Path:
    return root / "launcher" / f"{LAUNCHER}.c"


def build_launcher(config: LauncherConfig) -> Path:
    """Compile and link the launcher unless its inputs are unchanged; return the link output."""
    output = config.build / "launcher" / LAUNCHER
    digest = inputs_digest([
        file_sha256(config.source), config.toolchain.version, list(config.stable_cflags),
        config.libssh_digest,
    ])  # fmt: skip
    marker = config.build / "stamps" / "compile-launcher.json"
    if output.is_file() and stamp.is_current(marker, digest):
        log.info(f"{LAUNCHER}: up to date")
        return output
    with log.step(f"compile {LAUNCHER} [{config.toolchain.arch}]"):
        stamp.forget(marker)
        output.parent.mkdir(parents=True, exist_ok=True)
        log_file = config.build / "logs" / "launcher.log"
        log_file.write_text("")
        prefix = config.build / "prefix"
        partial = output.with_name(output.name + ".partial")
        logged(
            [str(config.toolchain.bin / "cc"), "-static", *config.cflags,
             "-Wall", "-Wextra", "-Werror", f"-I{prefix}/include", str(config.source),
             f"-L{prefix}/lib", *LIBS, "-o", str(partial)],
            cwd=config.build, log_file=log_file, env=config.toolchain.env(),
            what=f"build {LAUNCHER}",
        )  # fmt: skip
        partial.replace(output)
        stamp.record(marker, digest)
    return output

"""External commands: argument lists through plumbum, echoed before they run."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from plumbum import CommandNotFound, local

from . import log
from .errors import BuildError, ToolMissingError

# Which Debian package brings each host tool, for the "install it" hint.
_DEBIAN_PACKAGES = {
    "git": "git",
    "patch": "patch",
    "tar": "tar",
    "make": "make",
    "cmake": "cmake",
    "autoreconf": "autoconf",
    "aclocal": "automake",
    "pkg-config": "pkg-config",
    "tic": "ncurses-bin",
    "apt-get": "apt",
    "objcopy": "binutils",
    "aarch64-linux-gnu-objcopy": "binutils-aarch64-linux-gnu",
    "qemu-aarch64-static": "qemu-user-static",
    "buildah": "buildah",
    "podman": "podman",
    "skopeo": "skopeo",
}


def require_tool(name: str, why: str) -> str:
    """The full path of a host tool, or a ToolMissingError that says how to install it."""
    found = shutil.which(name)
    if found is None:
        package = _DEBIAN_PACKAGES.get(name, name)
        raise ToolMissingError(
            f"{name}: not found on PATH; it is needed to {why}",
            tip=f"install it (Debian: apt-get install {package}), or run scripts/setup-host",
        )
    return found


def capture(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    echo: bool = True,
) -> str:
    """Run a command and return its standard output; raise BuildError if it fails."""
    return capture_bytes(argv, cwd=cwd, env=env, echo=echo).decode(errors="replace")


def capture_bytes(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    echo: bool = True,
) -> bytes:
    """Run a command and return its standard output as bytes; BuildError if it fails."""
    if echo:
        log.command(argv, str(cwd) if cwd else None)
    command = _program(argv[0], why=f"run {argv[0]}")[list(argv[1:])]
    if cwd is not None:
        command = command.with_cwd(cwd)
    if env:
        command = command.with_env(**env)
    process = command.popen(stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        stdout, stderr = process.communicate()
    except BaseException:
        _stop_group(process)
        raise
    if process.returncode != 0:
        output = f"{stdout.decode(errors='replace')}\n{stderr.decode(errors='replace')}"
        raise BuildError(
            f"{argv[0]}: exited with {process.returncode}:\n{output.strip()[-3000:]}",
            tip="read the message above; rerun with the same arguments to reproduce",
        )
    return bytes(stdout)


def logged(
    argv: Sequence[str],
    *,
    cwd: Path,
    log_file: Path,
    env: Mapping[str, str] | None = None,
    what: str,
) -> None:
    """Run a build step with its output appended to log_file.

    On failure the error carries the last lines of the log and the log's path.
    """
    log.command(argv, str(cwd))
    # plumbum resolves a relative program against the current folder, not against cwd.
    program = str(cwd / argv[0]) if argv[0].startswith("./") else argv[0]
    command = _program(program, why=what)[list(argv[1:])].with_cwd(cwd)
    if env:
        command = command.with_env(**env)
    with log_file.open("ab") as sink:
        sink.write(f"\n$ {' '.join(argv)}\n".encode())
        sink.flush()
        # Its own process group, so that on an interrupt the whole step (make and the
        # compilers it started) stops, and no orphan keeps writing into the work tree.
        process = command.popen(stdout=sink, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        try:
            returncode = process.wait()
        except BaseException:
            _stop_group(process)
            raise
    if returncode != 0:
        raise BuildError(
            f"{what}: {argv[0]} exited with {returncode}\n"
            f"--- last lines of {log_file} ---\n{tail(log_file)}",
            tip=f"read the full log: {log_file}",
        )


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """Terminate a step's whole process group, then kill what is left after 10 s."""
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _program(name: str, why: str) -> Any:
    try:
        return local[name]
    except CommandNotFound as err:
        raise ToolMissingError(
            f"{name}: not found; it is needed to {why}",
            tip=f"install it (Debian: apt-get install {_DEBIAN_PACKAGES.get(name, name)})",
        ) from err


def tail(path: Path, lines: int = 25) -> str:
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(text[-lines:])

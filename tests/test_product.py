"""tmate-ssh-server itself: built from the mirror, checked as an ELF, crashed on purpose
and used by the real tmate client. Skips when no mirror holds its source."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tmate_forge.arch import Arch
from tmate_forge.compile import CompileResult
from tmate_forge.elfcheck import check_static, inspect
from tmate_forge.layout import layout_from_env
from tmate_forge.pipeline import run_compile

from .conftest import NEEDS_MIRROR, ROOT, mirror_with_tmate, require_tools
from .tmate_session import (
    HostKeys,
    ServerProcess,
    free_port,
    garbage_bind_key_lines,
    make_host_keys,
    running_server,
    tmate_session,
    viewer_sees,
)

pytestmark = [pytest.mark.toolchain, pytest.mark.mirror]

FRAME = re.compile(r"^tmate:   #(\d+) 0x([0-9a-f]+)$", re.MULTILINE)
EMULATOR: dict[Arch, list[str]] = {"x86_64": [], "aarch64": ["qemu-aarch64-static"]}
ADDR2LINE: dict[Arch, str] = {"x86_64": "addr2line", "aarch64": "aarch64-linux-gnu-addr2line"}


@pytest.fixture(scope="module", params=["x86_64", "aarch64"])
def built(request: pytest.FixtureRequest) -> CompileResult:
    arch: Arch = request.param
    if mirror_with_tmate() is None:
        pytest.skip(NEEDS_MIRROR)
    if os.geteuid() != 0:
        pytest.skip("tmate-ssh-server needs root (it chroots every session): run as root")
    require_tools("tmate", "ssh", "ssh-keygen", ADDR2LINE[arch], *EMULATOR[arch])
    result = run_compile(layout_from_env(ROOT), arch)
    assert result is not None
    return result


def _arch(result: CompileResult) -> Arch:
    arch = result.binary.parent.name
    assert arch in EMULATOR
    return arch


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> HostKeys:
    return make_host_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def server(built: CompileResult, keys: HostKeys, tmp_path: Path) -> Iterator[ServerProcess]:
    with running_server(built.binary, keys.folder, free_port(), prefix=EMULATOR[_arch(built)],
                        log=tmp_path / "server.log") as process:  # fmt: skip
        yield process


def test_binary_is_static_with_no_undefined_symbols(built: CompileResult) -> None:
    report = check_static(built.binary, _arch(built), symbols_from=built.debug)
    assert not report.has_symbols  # stripped
    assert inspect(built.debug).has_symbols


def test_patched_tree_has_no_execinfo(built: CompileResult) -> None:
    tree = layout_from_env(ROOT).build(_arch(built)) / "src" / "tmate-ssh-server"
    sources = "\n".join(p.read_text(errors="replace") for p in tree.rglob("*.[ch]"))
    assert "tmate_catch_sigsegv" in sources
    assert not re.search(r"#\s*include\s*<execinfo\.h>", sources)
    assert not re.search(r"\bbacktrace(_symbols)?\s*\(", sources)


def test_manifest_records_every_component(built: CompileResult) -> None:
    manifest = json.loads(built.manifest.read_text())
    names = [c["name"] for c in manifest["components"]]
    assert names[-1] == "tmate-ssh-server"
    assert {"libssh", "mbedtls", "libevent", "ncurses", "msgpack-c"} <= set(names)
    patches = {c["name"]: [p["name"] for p in c["patches"]] for c in manifest["components"]}
    assert len(patches["tmate-ssh-server"]) == 4
    assert manifest["artifacts"]["tmate-ssh-server"]["size"] == built.binary.stat().st_size


def test_second_compile_rebuilds_nothing(built: CompileResult) -> None:
    again = run_compile(layout_from_env(ROOT), _arch(built))
    assert again is not None
    assert again.rebuilt == ()
    assert again.binary.read_bytes() == built.binary.read_bytes()


def test_real_session_with_viewer(server: ServerProcess, keys: HostKeys, tmp_path: Path) -> None:
    with tmate_session(server.host, server.port, keys.fingerprints, tmp_path / "client",
                       server_log=server.log) as session:  # fmt: skip
        assert re.fullmatch(rf"ssh -p{server.port} [A-Za-z0-9]+@127\.0\.0\.1", session.ssh)
        assert viewer_sees(session, "MARKER-42"), "the viewer never showed MARKER-42"
    log = server.read_log()
    assert "Local cmd: bind-key" in log  # the getopt check below has lines to look at
    assert garbage_bind_key_lines(log) == []


def test_crash_logs_a_symbolized_stack_trace(built: CompileResult, server: ServerProcess) -> None:
    os.kill(server.process.pid, signal.SIGSEGV)
    status = server.process.wait(timeout=30)
    assert status == -signal.SIGSEGV, f"exit status {status}, expected death by SIGSEGV"

    log = server.read_log()
    assert re.search(r"caught signal 11 \(SIGSEGV\), stack trace \(load bias 0x0\)", log), log
    frames = [int(address, 16) for _, address in FRAME.findall(log)]
    assert len(frames) >= 3, log
    # #0 is the interrupted pc; the rest are return addresses, looked up one byte back.
    lookups = [frames[0], *(address - 1 for address in frames[1:])]
    resolved = subprocess.run(
        [ADDR2LINE[_arch(built)], "-f", "-e", str(built.debug), *(hex(a) for a in lookups)],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    functions = resolved[0::2]
    files = resolved[1::2]
    named = [f for f in functions if f != "??"]
    assert len(named) >= 3, resolved
    assert "main" in functions, resolved
    ours = [f for f in files if "tmate-ssh-server" in f or "libevent" in f]
    assert ours, resolved


def test_launcher_is_static_and_prints_matching_fingerprints(
    built: CompileResult, tmp_path: Path
) -> None:
    check_static(built.launcher, _arch(built), symbols_from=built.launcher_debug)
    keys = tmp_path / "keys"
    env = {"PATH": "/usr/bin:/bin", "SSH_KEYS_PATH": str(keys), "SSH_HOSTNAME": "h.example"}
    run = subprocess.run([*EMULATOR[_arch(built)], str(built.launcher), "--print-config"],
                         env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    for kind in ("rsa", "ed25519"):
        line = subprocess.run(
            ["ssh-keygen", "-l", "-E", "sha256", "-f", str(keys / f"ssh_host_{kind}_key.pub")],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert f"set -g tmate-server-{kind}-fingerprint {line.split()[1]}" in run.stdout

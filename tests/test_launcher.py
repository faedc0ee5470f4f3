"""The launcher, run for real: its argv, its host keys, its messages, and the real server.

Most tests start the launcher with a stand-in server: a shell script that writes the
arguments it was given to a file. That stand-in is legitimate here, since what is under
test is the argv the launcher builds, not the server. The last tests start the real
server through the launcher and connect the real tmate client with the printed block.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tmate_forge.arch import Arch
from tmate_forge.launcher import LAUNCHER
from tmate_forge.layout import layout_from_env
from tmate_forge.pipeline import run_compile

from .conftest import NEEDS_MIRROR, ROOT, mirror_with_tmate, require_tools
from .tmate_session import Fingerprints, free_port, tmate_session, viewer_sees, wait_listening

pytestmark = pytest.mark.toolchain
ARCH: Arch = "x86_64"
FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")


@pytest.fixture(scope="module")
def launcher() -> Path:
    """The launcher as the compile stage links it (it needs only libssh, not the mirror)."""
    require_tools("cmake", "make", "patch", "ssh-keygen")
    layout = layout_from_env(ROOT)
    run_compile(layout, ARCH, "libssh")
    return layout.build(ARCH) / "launcher" / LAUNCHER


@pytest.fixture
def stand_in(tmp_path: Path) -> tuple[Path, Path]:
    """A stand-in server that records its argv, one argument per line."""
    record = tmp_path / "argv"
    script = tmp_path / "fake-server"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\n')
    script.chmod(0o755)
    return script, record


def _run(
    launcher: Path, env: dict[str, str], *args: str, server: Path | None = None
) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "SSH_HOSTNAME": "tmate.example.org"}
    if server is not None:
        base["TMATE_SSH_SERVER"] = str(server)
    return subprocess.run([str(launcher), *args], env=base | env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip


def _argv(launcher: Path, stand_in: tuple[Path, Path], keys: Path, **env: str) -> list[str]:
    run = _run(launcher, {"SSH_KEYS_PATH": str(keys), **env}, server=stand_in[0])
    assert run.returncode == 0, run.stderr
    return stand_in[1].read_text().splitlines()[2:]  # after "-k KEYS"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({}, ["-h", "tmate.example.org", "-p", "2222", "-q", "2222"], id="defaults"),
        pytest.param({"SSH_PORT_LISTEN": "2200"}, ["-h", "tmate.example.org", "-p", "2200",
                     "-q", "2200"], id="advertise-follows-listen"),
        pytest.param({"SSH_PORT_ADVERTISE": "22"}, ["-h", "tmate.example.org", "-p", "2222",
                     "-q", "22"], id="advertise"),
        pytest.param({"SSH_BIND_ADDRESS": "127.0.0.1"}, ["-h", "tmate.example.org", "-p", "2222",
                     "-q", "2222", "-b", "127.0.0.1"], id="bind"),
        pytest.param({"USE_PROXY_PROTOCOL": "true"}, ["-h", "tmate.example.org", "-p", "2222",
                     "-q", "2222", "-x"], id="proxy-true"),
        pytest.param({"USE_PROXY_PROTOCOL": "off"}, ["-h", "tmate.example.org", "-p", "2222",
                     "-q", "2222"], id="proxy-off"),
        pytest.param({"REQUIRE_AUTHORIZED_KEYS": "YES"}, ["-h", "tmate.example.org", "-p",
                     "2222", "-q", "2222", "-A"], id="authorized-keys"),
        pytest.param({"HAS_WEBSOCKET": "1"}, ["-h", "tmate.example.org", "-p", "2222", "-q",
                     "2222", "-w", "localhost"], id="websocket-localhost"),
        pytest.param({"HAS_WEBSOCKET": "1", "WEBSOCKET_HOSTNAME": "ws.internal",
                      "WEBSOCKET_PORT": "4001"}, ["-h", "tmate.example.org", "-p", "2222", "-q",
                     "2222", "-w", "ws.internal", "-z", "4001"], id="websocket-host-wins"),
    ],
)  # fmt: skip
def test_settings_become_server_flags(
    launcher: Path,
    stand_in: tuple[Path, Path],
    tmp_path: Path,
    env: dict[str, str],
    expected: list[str],
) -> None:
    assert _argv(launcher, stand_in, tmp_path / "keys", **env) == expected


def test_unset_hostname_shifts_nothing_and_passthrough_comes_last(
    launcher: Path, stand_in: tuple[Path, Path], tmp_path: Path
) -> None:
    env = {"PATH": "/usr/bin:/bin", "SSH_KEYS_PATH": str(tmp_path / "keys"),
           "TMATE_SSH_SERVER": str(stand_in[0])}  # fmt: skip
    run = subprocess.run([str(launcher), "--", "-v", "-v"], env=env, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert run.returncode == 0, run.stderr
    argv = stand_in[1].read_text().splitlines()
    assert argv[:4] == ["-k", str(tmp_path / "keys"), "-h", socket.gethostname()]
    assert argv[-2:] == ["-v", "-v"]
    assert f"starting {stand_in[0]} -k {tmp_path / 'keys'}" in run.stderr


@pytest.mark.parametrize(
    ("variable", "value", "allowed"),
    [
        ("SSH_PORT_LISTEN", "abc", "a port number from 1 to 65535"),
        ("SSH_PORT_LISTEN", "0", "a port number from 1 to 65535"),
        ("SSH_PORT_LISTEN", "65536", "a port number from 1 to 65535"),
        ("SSH_PORT_ADVERTISE", "22x", "a port number from 1 to 65535"),
        ("WEBSOCKET_PORT", "-1", "a port number from 1 to 65535"),
        ("USE_PROXY_PROTOCOL", "maybe", ""),
        ("HAS_WEBSOCKET", "2", ""),
        ("REQUIRE_AUTHORIZED_KEYS", "enabled", ""),
    ],
)
def test_bad_value_stops_before_anything_is_touched(
    launcher: Path, stand_in: tuple[Path, Path], tmp_path: Path, variable: str, value: str,
    allowed: str,
) -> None:  # fmt: skip
    keys = tmp_path / "keys"
    run = _run(launcher, {"SSH_KEYS_PATH": str(keys), variable: value}, server=stand_in[0])
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith(f'{LAUNCHER}: {variable}="{value}": expected ')
    assert allowed in lines[0]
    assert not keys.exists()
    assert not stand_in[1].exists()


def _fingerprint(pub: Path) -> str:
    line = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(pub)],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    return line.split()[1]


def test_keys_are_made_once_with_safe_modes(launcher: Path, tmp_path: Path) -> None:
    keys = tmp_path / "etc" / "tmate-keys"
    first = _run(launcher, {"SSH_KEYS_PATH": str(keys)}, "--print-config")
    assert first.returncode == 0, first.stderr
    assert keys.stat().st_mode & 0o777 == 0o700
    names = ("ssh_host_ed25519_key", "ssh_host_rsa_key")
    for name in names:
        assert (keys / name).stat().st_mode & 0o777 == 0o600
        assert (keys / f"{name}.pub").exists()
        assert (keys / name).read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    bits = subprocess.run(["ssh-keygen", "-l", "-f", str(keys / "ssh_host_rsa_key.pub")],
                          capture_output=True, text=True, check=True).stdout.split()[0]  # fmt: skip
    assert int(bits) >= 3072

    before = {name: ((keys / name).stat().st_ino, (keys / name).read_bytes()) for name in names}
    second = _run(launcher, {"SSH_KEYS_PATH": str(keys)}, "--print-config")
    assert second.returncode == 0, second.stderr
    assert {name: ((keys / name).stat().st_ino, (keys / name).read_bytes())
            for name in names} == before  # fmt: skip
    assert "generating" not in second.stderr


def test_printed_fingerprints_match_ssh_keygen(launcher: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    run = _run(launcher, {"SSH_KEYS_PATH": str(keys), "SSH_PORT_ADVERTISE": "443"},
               "--print-config")  # fmt: skip
    assert run.returncode == 0, run.stderr
    block = [line for line in run.stdout.splitlines() if line.startswith("set -g ")]
    assert block == [
        "set -g tmate-server-host tmate.example.org",
        "set -g tmate-server-port 443",
        f"set -g tmate-server-rsa-fingerprint {_fingerprint(keys / 'ssh_host_rsa_key.pub')}",
        "set -g tmate-server-ed25519-fingerprint "
        + _fingerprint(keys / "ssh_host_ed25519_key.pub"),
    ]


def test_pem_rsa_key_from_older_images_is_used(launcher: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "3072", "-m", "PEM", "-N", "",
                    "-f", str(keys / "ssh_host_rsa_key")], check=True)  # fmt: skip
    pem = (keys / "ssh_host_rsa_key").read_bytes()
    assert pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    run = _run(launcher, {"SSH_KEYS_PATH": str(keys)}, "--print-config")
    assert run.returncode == 0, run.stderr
    assert (keys / "ssh_host_rsa_key").read_bytes() == pem
    assert _fingerprint(keys / "ssh_host_rsa_key.pub") in run.stdout


def test_corrupt_key_is_refused_and_nothing_is_touched(launcher: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    (keys / "ssh_host_rsa_key").write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----\ngarbage\n")
    before = sorted(p.name for p in keys.iterdir())
    run = _run(launcher, {"SSH_KEYS_PATH": str(keys)}, "--print-config")
    assert run.returncode == 3
    assert f"{keys / 'ssh_host_rsa_key'}" in run.stderr
    assert sorted(p.name for p in keys.iterdir()) == before  # no ed25519 key made either


def test_unwritable_keys_folder_is_an_error(launcher: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    run = _run(launcher, {"SSH_KEYS_PATH": str(blocker / "keys")}, "--print-config")
    assert run.returncode == 3
    assert str(blocker / "keys") in run.stderr


def test_help_names_every_variable(launcher: Path) -> None:
    run = _run(launcher, {}, "--help")
    assert run.returncode == 0
    for variable in ("SSH_KEYS_PATH", "SSH_HOSTNAME", "SSH_PORT_LISTEN", "SSH_PORT_ADVERTISE",
                     "SSH_BIND_ADDRESS", "USE_PROXY_PROTOCOL", "REQUIRE_AUTHORIZED_KEYS",
                     "HAS_WEBSOCKET", "WEBSOCKET_HOSTNAME", "WEBSOCKET_PORT"):  # fmt: skip
        assert variable in run.stdout


def test_unknown_option_is_refused(launcher: Path) -> None:
    run = _run(launcher, {}, "--frobnicate")
    assert run.returncode == 2
    assert "--frobnicate" in run.stderr


def test_wrong_tmp_tmate_mode_is_said_plainly(
    launcher: Path, stand_in: tuple[Path, Path], tmp_path: Path
) -> None:
    require_tools("unshare")
    if os.geteuid() != 0:
        pytest.skip("needs root for a private mount namespace")
    # /tmp/tmate is a fixed path that real servers share: in a private mount namespace,
    # a tmpfs with the wrong mode covers it for this test only.
    script = (
        "mkdir -p -m 0700 /tmp/tmate && mount -t tmpfs -o mode=0755 none /tmp/tmate && "
        f'exec "{launcher}" "$@"'
    )
    env = {"PATH": "/usr/bin:/bin:/sbin:/usr/sbin", "SSH_KEYS_PATH": str(tmp_path / "keys"),
           "SSH_HOSTNAME": "h", "TMATE_SSH_SERVER": str(stand_in[0])}  # fmt: skip
    run = subprocess.run(["unshare", "--mount", "sh", "-c", script, "launcher"], env=env,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode == 3, run.stderr
    assert "/tmp/tmate" in run.stderr
    assert "0755" in run.stderr or "755" in run.stderr
    assert not stand_in[1].exists()


def test_two_launchers_racing_on_an_empty_folder_agree(launcher: Path, tmp_path: Path) -> None:
    for attempt in range(5):
        keys = tmp_path / f"keys{attempt}"
        env = {"PATH": "/usr/bin:/bin", "SSH_KEYS_PATH": str(keys), "SSH_HOSTNAME": "h"}
        racers = [subprocess.Popen([str(launcher), "--print-config"], env=env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                  for _ in range(2)]  # fmt: skip
        outputs = [racer.communicate(timeout=120) for racer in racers]
        assert [racer.returncode for racer in racers] == [0, 0], outputs
        assert outputs[0][0] == outputs[1][0]  # the same fingerprints printed by both
        for kind in ("rsa", "ed25519"):
            derived = subprocess.run(["ssh-keygen", "-y", "-f", str(keys / f"ssh_host_{kind}_key")],
                                     capture_output=True, text=True, check=True).stdout  # fmt: skip
            stored = (keys / f"ssh_host_{kind}_key.pub").read_text()
            assert derived.split()[:2] == stored.split()[:2]
        assert not [p for p in keys.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("kind", ["fifo", "dangling-link", "directory"])
def test_odd_file_in_a_key_slot_is_refused_without_touching_anything(
    launcher: Path, tmp_path: Path, kind: str
) -> None:
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    slot = keys / "ssh_host_rsa_key"
    if kind == "fifo":
        os.mkfifo(slot)  # opening it would block: the launcher must look before it opens
    elif kind == "dangling-link":
        slot.symlink_to(tmp_path / "nowhere")
    else:
        slot.mkdir()
    run = _run(launcher, {"SSH_KEYS_PATH": str(keys)}, "--print-config")
    assert run.returncode == 3, run.stderr
    assert str(slot) in run.stderr
    assert sorted(p.name for p in keys.iterdir()) == ["ssh_host_rsa_key"]


def test_keys_path_with_a_newline_is_refused(launcher: Path, tmp_path: Path) -> None:
    # It is echoed in a comment of the block users paste: a newline would inject a line.
    value = f"{tmp_path}/k\nset -g tmate-server-host evil.example"
    run = _run(launcher, {"SSH_KEYS_PATH": value}, "--print-config")
    assert run.returncode == 2
    assert "SSH_KEYS_PATH=" in run.stderr
    assert "evil.example" not in run.stdout


def test_server_that_is_a_directory_is_refused_first(launcher: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    run = _run(launcher, {"SSH_KEYS_PATH": str(keys)}, server=tmp_path)
    assert run.returncode == 2
    assert "not a regular file" in run.stderr
    assert not keys.exists()


def test_server_ignoring_sigterm_is_killed_after_the_grace(launcher: Path, tmp_path: Path) -> None:
    stubborn = tmp_path / "stubborn-server"
    stubborn.write_text('#!/bin/sh\ntrap "" TERM\necho ready\nwhile :; do sleep 0.1; done\n')
    stubborn.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "SSH_KEYS_PATH": str(tmp_path / "keys"),
           "SSH_HOSTNAME": "h", "TMATE_SSH_SERVER": str(stubborn)}  # fmt: skip
    process = subprocess.Popen([str(launcher)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    assert process.stdout is not None
    for line in process.stdout:
        if line.strip() == "ready":
            break
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 128 + signal.SIGKILL
    assert time.monotonic() - started < 2.0


def test_stop_during_key_generation_does_not_start_the_server(
    launcher: Path, stand_in: tuple[Path, Path], tmp_path: Path
) -> None:
    env = {"PATH": "/usr/bin:/bin", "SSH_KEYS_PATH": str(tmp_path / "keys"),
           "SSH_HOSTNAME": "h", "TMATE_SSH_SERVER": str(stand_in[0])}  # fmt: skip
    process = subprocess.Popen([str(launcher)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert process.stderr is not None
    for line in process.stderr:
        if "generating RSA host key" in line:
            break
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM
    assert not stand_in[1].exists()


@pytest.fixture
def real_server(launcher: Path) -> Path:
    if mirror_with_tmate() is None:
        pytest.skip(NEEDS_MIRROR)
    if os.geteuid() != 0:
        pytest.skip("tmate-ssh-server needs root (it chroots every session)")
    require_tools("tmate", "ssh", "unshare")
    result = run_compile(layout_from_env(ROOT), ARCH)
    assert result is not None
    return result.binary


@pytest.fixture
def launched(
    launcher: Path, real_server: Path, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    """The launcher as PID 1 of its own PID namespace, starting the real server."""
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "SSH_KEYS_PATH": str(tmp_path / "keys"),
           "SSH_HOSTNAME": "127.0.0.1", "SSH_BIND_ADDRESS": "127.0.0.1",
           "SSH_PORT_LISTEN": str(port), "TMATE_SSH_SERVER": str(real_server)}  # fmt: skip
    log = tmp_path / "launcher.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount-proc", str(launcher)], env=env,
            stdout=sink, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    try:
        wait_listening(process, port, log)
        yield process, port, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _parent(pid: str) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _launcher_pid(unshare_pid: int) -> int:
    """The launcher: unshare's child, PID 1 of the new namespace."""
    pids = [p.name for p in Path("/proc").iterdir() if p.name.isdigit()]
    return int(next(pid for pid in pids if _parent(pid) == unshare_pid))


def _namespace_zombies(launcher_pid: int) -> list[str]:
    """Zombies in the PID namespace whose PID 1 is the launcher."""
    namespace = Path(f"/proc/{launcher_pid}/ns/pid").readlink()
    zombies = []
    for entry in Path("/proc").iterdir():
        try:
            same = (entry / "ns" / "pid").readlink() == namespace
            status = (entry / "status").read_text()
        except OSError:
            continue  # not a process, or it ended meanwhile
        if same and "\nState:\tZ" in status:
            zombies.append(status.split("\n", 1)[0])
    return zombies


def test_pasted_client_block_connects_and_stop_is_quick(
    launched: tuple[subprocess.Popen[str], int, Path], tmp_path: Path
) -> None:
    process, port, log = launched
    text = log.read_text()
    block = [line for line in text.splitlines() if line.startswith("set -g tmate-server-")]
    assert len(block) == 4, text
    rsa, ed25519 = (FINGERPRINT.search(line) for line in block[2:])
    assert rsa
    assert ed25519
    fingerprints = Fingerprints(rsa=rsa.group(), ed25519=ed25519.group())
    for round_number in range(3):
        with tmate_session("127.0.0.1", port, fingerprints, tmp_path / f"c{round_number}",
                           server_log=log) as session:  # fmt: skip
            assert viewer_sees(session, "MARKER-42")
    time.sleep(1)
    launcher_pid = _launcher_pid(process.pid)
    assert _namespace_zombies(launcher_pid) == []

    # As `podman stop` does: SIGTERM to PID 1 of the namespace (unshare forwards nothing).
    started = time.monotonic()
    os.kill(launcher_pid, signal.SIGTERM)
    process.wait(timeout=10)
    stopped = time.monotonic() - started
    assert stopped < 2.0, f"stop took {stopped:.2f} s"
    assert not subprocess.run(["pgrep", "-f", str(tmp_path / "keys")], capture_output=True).stdout

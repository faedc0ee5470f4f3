"""The real image under podman: read from its layers, and run with the real tmate client.

`nox -s verify -- --arch ARCH` runs these against the image that `nox -s image` wrote to
dist/ARCH (and fails if there is none). In the test suite they build the host's image
first, and skip when tmate-ssh-server's source is not at hand.

Inside the running container, pytest-testinfra's podman backend reads files and runs
commands, always through /bin/sh. The image has no shell, on purpose, so every container
that testinfra looks into gets Debian's static busybox bind-mounted read-only at
/bin/sh, for the test only. The checks that the image holds no shell read its layers,
and start it without that mount.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import testinfra

from tmate_forge.arch import Arch, parse_arch
from tmate_forge.compile import PRODUCT
from tmate_forge.image import CAPABILITIES, ImageConfig, build_image
from tmate_forge.launcher import LAUNCHER
from tmate_forge.layout import layout_from_env
from tmate_forge.ocilayout import OciImage, layer_files, read_image
from tmate_forge.pipeline import run_image

from .conftest import NEEDS_MIRROR, ROOT, mirror_with_tmate
from .tmate_session import (
    Fingerprints,
    HarnessError,
    free_port,
    tmate_session,
    viewer_sees,
)

# In the test suite these build the whole product first, from the mirror.
pytestmark = [pytest.mark.image, pytest.mark.toolchain, pytest.mark.mirror]

BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static: a static shell for testinfra
SIZE_LIMIT = 60_000_000  # bytes: the Alpine-based images this one replaces were 59 MB+
START_TIMEOUT = 90.0  # an aarch64 image runs under qemu, and makes an RSA key at first start
# What each capability does for the server, and the line it logs when it lacks it.
CAPABILITY_FAILURE = {
    "SYS_ADMIN": "fatal: Cannot create new namespace",
    "SYS_CHROOT": "fatal: Cannot chroot()",
    "SETGID": "fatal: Cannot setgroups()",
    "SETUID": "fatal: Cannot setresuid()",
}
CAPABILITY_BITS = {"SETGID": 6, "SETUID": 7, "SYS_CHROOT": 18, "SYS_ADMIN": 21}
SHELLS = {"sh", "ash", "bash", "dash", "zsh", "busybox", "toybox"}


@dataclass(frozen=True)
class Image:
    arch: Arch
    archive: Path
    oci: OciImage
    name: str  # where the tests loaded it in the local container storage


def _missing_tools() -> list[str]:
    tools = ("podman", "skopeo", "tmate", "ssh", "ssh-keygen", str(BUSYBOX))
    return [tool for tool in tools if shutil.which(tool) is None]


def _archive_in_dist(arch: Arch) -> Path:
    found = sorted((ROOT / "dist" / arch).glob(f"{PRODUCT}-*.oci.tar"))
    if not found:
        pytest.fail(f"no image in dist/{arch}: run `nox -s image -- --arch {arch}` first")
    if len(found) > 1:
        pytest.fail(f"dist/{arch} holds {len(found)} images ({', '.join(p.name for p in found)}): "
                    "remove the ones not to check, then run verify again")  # fmt: skip
    return found[0]


@pytest.fixture(scope="module")
def image(request: pytest.FixtureRequest) -> Iterator[Image]:
    chosen = request.config.getoption("--image-arch")
    verifying = chosen is not None
    # `nox -s verify` must not pass by skipping: what is missing there is a failure.
    give_up = pytest.fail if verifying else pytest.skip
    if missing := _missing_tools():
        give_up(f"needs {', '.join(missing)}: run scripts/setup-host")
    if subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() != "0":
        give_up("the server chroots every session, so the image runs under rootful podman: "
                "run as root")  # fmt: skip
    if verifying:
        arch = parse_arch(chosen)
        archive = _archive_in_dist(arch)
    else:
        if mirror_with_tmate() is None:
            pytest.skip(NEEDS_MIRROR)
        arch = parse_arch(None)
        archive = run_image(layout_from_env(ROOT), arch, load=False).archive
    name = f"localhost/tmate-forge-verify:{arch}-{uuid.uuid4().hex[:8]}"
    _podman_cmd(["skopeo", "copy", "--quiet", f"oci-archive:{archive}",
                 f"containers-storage:{name}"])  # fmt: skip
    try:
        yield Image(arch=arch, archive=archive, oci=read_image(archive), name=name)
    finally:
        subprocess.run(["podman", "rmi", "--force", name], capture_output=True, check=False)


def _podman_cmd(argv: Sequence[str], timeout: float = 120.0) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          check=False)  # fmt: skip
    if done.returncode != 0:
        raise AssertionError(f"{argv} exited with {done.returncode}:\n{done.stderr}")
    return done.stdout


# ---------------------------------------------------------------- running containers


@dataclass(frozen=True)
class Running:
    name: str
    port: int  # on 127.0.0.1, published to the container's 2222

    def logs(self) -> str:
        done = subprocess.run(["podman", "logs", self.name], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, check=False)  # fmt: skip
        return done.stdout

    def fingerprints(self) -> Fingerprints:
        text = self.logs()
        found = {
            kind: re.search(rf"^set -g tmate-server-{kind}-fingerprint (SHA256:\S+)$", text, re.M)
            for kind in ("rsa", "ed25519")
        }
        if not (found["rsa"] and found["ed25519"]):
            raise AssertionError(f"no client block in the log of {self.name}:\n{text}")
        return Fingerprints(rsa=found["rsa"][1], ed25519=found["ed25519"][1])

    def host(self) -> Any:
        return testinfra.get_host(f"podman://{self.name}")

    def inspect(self, template: str) -> str:
        return _podman_cmd(["podman", "inspect", "--format", template, self.name]).strip()


@contextlib.contextmanager
def container(
    image: Image,
    *,
    caps: Sequence[str] = CAPABILITIES,
    volume: str | None = None,
    env: Sequence[str] = (),
    shell: bool = True,
    wait: bool = True,
) -> Iterator[Running]:
    """The image run the documented way: no privileges beyond caps, a read-only root,
    a tmpfs at /tmp, the keys in volume, port 2222 published on 127.0.0.1."""
    name = f"tmate-forge-test-{uuid.uuid4().hex[:12]}"
    port = free_port()
    argv = ["podman", "run", "--detach", "--pull=never", "--name", name,
            "--cap-drop", "ALL", "--read-only", "--tmpfs", "/tmp",
            "--publish", f"127.0.0.1:{port}:2222",
            "--env", "SSH_HOSTNAME=127.0.0.1", "--env", f"SSH_PORT_ADVERTISE={port}"]  # fmt: skip
    if caps:
        argv += ["--cap-add", ",".join(caps)]
    if volume:
        argv += ["--volume", f"{volume}:/etc/tmate-keys"]
    if shell:
        argv += ["--volume", f"{BUSYBOX}:/bin/sh:ro"]  # for testinfra only; see the top
    for setting in env:
        argv += ["--env", setting]
    _podman_cmd([*argv, image.name])
    running = Running(name=name, port=port)
    try:
        if wait:
            _wait_for_log(running, "Accepting connections on :2222")
        yield running
    finally:
        subprocess.run(["podman", "rm", "--force", "--volumes", "--time", "0", name],
                       capture_output=True, check=False)  # fmt: skip


def _wait_for_log(running: Running, text: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while text not in running.logs():
        if running.inspect("{{.State.Running}}") != "true":
            raise AssertionError(f"{running.name} exited; its log:\n{running.logs()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} in {timeout:g} s; the log:\n{running.logs()}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def volume() -> Iterator[str]:
    name = f"tmate-forge-test-keys-{uuid.uuid4().hex[:12]}"
    _podman_cmd(["podman", "volume", "create", name])
    try:
        yield name
    finally:
        subprocess.run(["podman", "volume", "rm", "--force", name], capture_output=True,
                       check=False)  # fmt: skip


@pytest.fixture(scope="module")
def server(image: Image, volume: str) -> Iterator[Running]:
    """The container the most tests look at: first start, on an empty volume."""
    with container(image, volume=volume) as running:
        yield running


def _ssh_keygen_fingerprint(public_key: str, folder: Path) -> str:
    path = folder / "key.pub"
    path.write_text(public_key)
    line = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(path)],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    return line.split()[1]


# ---------------------------------------------------------------------- the image itself


def test_image_is_small(image: Image, capsys: pytest.CaptureFixture[str]) -> None:
    oci = image.oci
    with capsys.disabled():
        print(f"\n    image [{image.arch}] {image.archive.name}: "
              f"{oci.compressed_size:,} B compressed, {oci.uncompressed_size:,} B unpacked, "
              f"archive {image.archive.stat().st_size:,} B")  # fmt: skip
    assert oci.compressed_size < SIZE_LIMIT
    assert oci.uncompressed_size < SIZE_LIMIT
    assert len(oci.layers) == 1


def test_rebuilding_from_the_package_gives_the_same_bytes(image: Image, tmp_path: Path) -> None:
    """The stage again, on the APK beside the archive, with the inputs its annotations
    record: the same archive, byte for byte."""
    annotations = image.oci.manifest["annotations"]
    version = annotations["org.opencontainers.image.version"]
    config = ImageConfig(
        arch=image.arch,
        package=image.archive.with_name(f"{PRODUCT}-{version}.apk"),
        version=version,
        revision=annotations["org.opencontainers.image.revision"],
        source=annotations["org.opencontainers.image.source"],
        licenses=annotations["org.opencontainers.image.licenses"],
        created=int(datetime.fromisoformat(annotations["org.opencontainers.image.created"])
                    .timestamp()),
        work=tmp_path / "build",
        dist=tmp_path / "dist",
        load=False,
    )  # fmt: skip
    again = build_image(config)
    assert again.image.manifest_digest == image.oci.manifest_digest
    assert again.archive.read_bytes() == image.archive.read_bytes()


def test_file_name_matches_the_version_inside(image: Image) -> None:
    version = image.oci.manifest["annotations"]["org.opencontainers.image.version"]
    assert image.archive.name == f"{PRODUCT}-{version}.oci.tar"
    assert image.oci.config["architecture"] == {"x86_64": "amd64", "aarch64": "arm64"}[image.arch]


def test_loaded_image_has_the_archive_digest(image: Image) -> None:
    digest = _podman_cmd(["podman", "image", "inspect", "--format", "{{.Digest}}", image.name])
    assert digest.strip() == image.oci.manifest_digest


# A PEM private key with its base64 body. The binaries hold the bare header lines as
# strings (libssh and mbedTLS parse keys), which is not a key.
PEM_PRIVATE_KEY = re.compile(
    rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----\r?\n(?:[A-Za-z0-9+/=:, -]*\r?\n){2,}"
    rb"-----END [A-Z0-9 ]*PRIVATE KEY-----"
)


def test_private_key_detector(tmp_path: Path) -> None:
    for kind in ("ed25519", "rsa"):
        key = tmp_path / kind
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(key)], check=True)
        assert PEM_PRIVATE_KEY.search(b"\0junk" + key.read_bytes() + b"\0")
        assert not PEM_PRIVATE_KEY.search(key.with_suffix(".pub").read_bytes())
    pem = tmp_path / "pem"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-m", "PEM", "-N", "", "-f", str(pem)],
                   check=True)  # fmt: skip
    assert PEM_PRIVATE_KEY.search(pem.read_bytes())
    assert not PEM_PRIVATE_KEY.search(b"\0-----BEGIN RSA PRIVATE KEY-----\0-----END RSA")


def test_no_layer_holds_a_private_key(image: Image) -> None:
    offenders = [
        info.name
        for _, info, data in layer_files(image.archive)
        if PEM_PRIVATE_KEY.search(data) or "tmate-keys/" in info.name or "ssh_host_" in info.name
    ]
    assert offenders == []


def test_image_holds_no_shell(image: Image) -> None:
    files = [(info, data) for _, info, data in layer_files(image.archive)]
    names = {Path(info.name).name for info, _ in files}
    assert names.isdisjoint(SHELLS)
    executables = sorted(info.name for info, _ in files if info.isreg() and info.mode & 0o111)
    assert executables == ["usr/bin/tmate-ssh-server", "usr/bin/tmate-ssh-server-launch"]
    assert not [info.name for info, _ in files if info.issym() or info.islnk()]
    done = subprocess.run(["podman", "run", "--rm", "--pull=never", "--entrypoint", "/bin/sh",
                           image.name, "-c", "true"], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode != 0
    assert "/bin/sh" in done.stderr


# ------------------------------------------------------------------ first start, keys


def test_first_start_makes_keys_mode_0600(server: Running) -> None:
    host = server.host()
    for kind in ("rsa", "ed25519"):
        key = host.file(f"/etc/tmate-keys/ssh_host_{kind}_key")
        assert key.is_file
        assert key.mode == 0o600
        assert key.user == "root"
        assert host.file(f"/etc/tmate-keys/ssh_host_{kind}_key.pub").is_file
    assert host.file("/etc/tmate-keys").mode == 0o700


def test_log_shows_fingerprints_and_client_block(server: Running, tmp_path: Path) -> None:
    log = server.logs()
    host = server.host()
    printed = server.fingerprints()
    for kind, fingerprint in (("rsa", printed.rsa), ("ed25519", printed.ed25519)):
        public = host.file(f"/etc/tmate-keys/ssh_host_{kind}_key.pub").content_string
        assert _ssh_keygen_fingerprint(public, tmp_path) == fingerprint
        assert re.search(rf"^#\s+{kind.upper()}\b.*\s{re.escape(fingerprint)}$", log, re.M), log
    assert f"set -g tmate-server-port {server.port}" in log
    assert "set -g tmate-server-host 127.0.0.1" in log


def test_runs_unprivileged_with_the_minimal_capabilities(server: Running) -> None:
    assert server.inspect("{{.HostConfig.Privileged}}") == "false"
    status = server.host().file("/proc/1/status").content_string
    effective = int(re.search(r"^CapEff:\s*([0-9a-f]+)$", status, re.M)[1], 16)  # type: ignore[index]
    assert effective == sum(1 << CAPABILITY_BITS[cap] for cap in CAPABILITIES)


def test_runs_read_only_with_tmpfs_tmp(server: Running) -> None:
    host = server.host()
    mounts = {line.split()[1]: line.split() for line in host.file("/proc/mounts").content_string
              .splitlines()}  # fmt: skip
    assert "ro" in mounts["/"][3].split(",")
    assert mounts["/tmp"][2] == "tmpfs"
    assert "rw" in mounts["/tmp"][3].split(",")
    attempt = host.run("echo x > /etc/probe")
    assert attempt.rc != 0
    assert "Read-only file system" in attempt.stderr
    # The server made its work folders on the tmpfs, as root, mode 0700.
    assert host.file("/tmp/tmate/jail").mode == 0o700


# ----------------------------------------------------------------- sessions, zombies


def test_three_real_sessions_then_no_zombie(server: Running, tmp_path: Path) -> None:
    fingerprints = server.fingerprints()
    for round_number in range(3):
        with tmate_session("127.0.0.1", server.port, fingerprints,
                           tmp_path / f"c{round_number}") as session:  # fmt: skip
            assert session.ssh_port == server.port
            assert viewer_sees(session, "MARKER-42"), f"session {round_number}: no MARKER-42"
    assert _sessions_gone(server), server.logs()
    states = _process_states(server)
    assert "Z" not in states.values(), states


def _sessions_gone(server: Running, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.logs().count("Session terminated") >= 3:
            return True
        time.sleep(0.5)
    return False


def _process_states(server: Running) -> dict[str, str]:
    """PID and state of every process in the container, read from /proc."""
    text = server.host().run("cat /proc/[0-9]*/stat").stdout
    states = {}
    for line in text.splitlines():
        pid, _, rest = line.partition(" (")
        command, _, fields = rest.rpartition(") ")
        states[f"{pid} {command}"] = fields.split()[0]
    return states


@pytest.mark.parametrize("dropped", CAPABILITIES)
def test_each_capability_is_needed(image: Image, dropped: str, tmp_path: Path) -> None:
    caps = [cap for cap in CAPABILITIES if cap != dropped]
    with container(image, caps=caps, shell=False) as running:
        fingerprints = running.fingerprints()
        with (
            pytest.raises(HarnessError),
            tmate_session("127.0.0.1", running.port, fingerprints, tmp_path / "c", timeout=15),
        ):
            pass
        assert CAPABILITY_FAILURE[dropped] in running.logs()


# ----------------------------------------------------------------- restart, stop, bad input


def test_restart_on_the_same_volume_keeps_the_keys(image: Image) -> None:
    name = f"tmate-forge-test-keys-{uuid.uuid4().hex[:12]}"
    _podman_cmd(["podman", "volume", "create", name])
    try:
        with container(image, volume=name) as first:
            before = _key_files(first)
            fingerprints = first.fingerprints()
        with container(image, volume=name) as second:
            assert second.fingerprints() == fingerprints
            assert _key_files(second) == before
            assert "generating" not in second.logs()
    finally:
        subprocess.run(["podman", "volume", "rm", "--force", name], capture_output=True,
                       check=False)  # fmt: skip


def test_print_config_after_a_restart_is_one_block(image: Image, volume: str) -> None:
    """The README reads the client block with `podman exec NAME tmate-ssh-server-launch
    --print-config`, not from `podman logs`, which keeps one block per start."""
    with container(image, volume=volume, shell=False) as running:
        _podman_cmd(["podman", "restart", "--time", "5", running.name])
        _wait_for_log(running, "Accepting connections on :2222")
        block = _podman_cmd(["podman", "exec", running.name, f"/usr/bin/{LAUNCHER}",
                             "--print-config"])  # fmt: skip
        assert running.logs().count("# Client configuration") == 2
        fingerprints = running.fingerprints()
    settings = [line for line in block.splitlines() if not line.startswith("#")]
    assert settings == [
        "set -g tmate-server-host 127.0.0.1",
        f"set -g tmate-server-port {running.port}",
        f"set -g tmate-server-rsa-fingerprint {fingerprints.rsa}",
        f"set -g tmate-server-ed25519-fingerprint {fingerprints.ed25519}",
    ]


def _key_files(running: Running) -> dict[str, tuple[str, int, int]]:
    """Each key file's SHA-256, inode and modification time."""
    host = running.host()
    result = {}
    for kind in ("rsa", "ed25519"):
        for suffix in ("", ".pub"):
            key = host.file(f"/etc/tmate-keys/ssh_host_{kind}_key{suffix}")
            stat = host.run(f"stat -c '%i %Y' {key.path}").stdout.split()
            result[key.path] = (key.sha256sum, int(stat[0]), int(stat[1]))
    return result


def test_podman_stop_is_quick_with_a_session_open(image: Image, tmp_path: Path) -> None:
    """The session processes run as nobody, and the launcher holds no CAP_KILL: it must
    still be gone within podman's grace, leaving the rest to the kernel as PID 1."""
    with container(image, shell=False) as running:
        fingerprints = running.fingerprints()
        with tmate_session("127.0.0.1", running.port, fingerprints, tmp_path / "c"):
            start = time.monotonic()
            _podman_cmd(["podman", "stop", "--time", "10", running.name])
            elapsed = time.monotonic() - start
        assert running.inspect("{{.State.Running}}") == "false"
        exit_code = running.inspect("{{.State.ExitCode}}")
    # 10 s is podman's grace before SIGKILL (exit 137): under 2 s, with the launcher's
    # own exit code, means the launcher handled SIGTERM and did not wait on the session.
    assert elapsed < 2.0, f"podman stop took {elapsed:.2f} s"
    assert exit_code != "137", running.logs()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("SSH_PORT_LISTEN=abc", "SSH_PORT_LISTEN"),
        ("USE_PROXY_PROTOCOL=maybe", "USE_PROXY_PROTOCOL"),
        ("SSH_PORT_ADVERTISE=70000", "SSH_PORT_ADVERTISE"),
    ],
)
def test_bad_setting_fails_fast(image: Image, setting: str, message: str) -> None:
    argv = ["podman", "run", "--rm", "--pull=never", "--cap-drop", "ALL",
            "--cap-add", ",".join(CAPABILITIES), "--read-only", "--tmpfs", "/tmp",
            "--env", setting, image.name]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    value = setting.partition("=")[2]
    lines = [line for line in done.stderr.splitlines() if message in line]
    assert lines, done.stderr
    assert value in lines[0]
    assert "generating" not in done.stderr  # it stopped before touching the keys

"""`nox -s apk`: the real package of the static build, judged and installed by Alpine's apk,
then serving a real tmate session from inside that Alpine root. Needs the mirror."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tmate_forge.apk import ApkResult
from tmate_forge.apkindex import control_member
from tmate_forge.layout import default_cache, layout_from_env
from tmate_forge.pipeline import run_apk

from .alpine import apk, extract_alpine
from .conftest import NEEDS_MIRROR, ROOT, mirror_with_tmate, require_tools
from .tmate_session import Fingerprints, free_port, tmate_session, viewer_sees, wait_listening

pytestmark = [pytest.mark.toolchain, pytest.mark.mirror]
LAUNCHER_VARIABLES = ("SSH_KEYS_PATH", "SSH_HOSTNAME", "SSH_PORT_LISTEN", "SSH_PORT_ADVERTISE",
                      "SSH_BIND_ADDRESS", "USE_PROXY_PROTOCOL", "REQUIRE_AUTHORIZED_KEYS",
                      "HAS_WEBSOCKET", "WEBSOCKET_HOSTNAME", "WEBSOCKET_PORT")  # fmt: skip


@pytest.fixture(scope="module")
def built() -> ApkResult:
    if mirror_with_tmate() is None:
        pytest.skip(NEEDS_MIRROR)
    return run_apk(layout_from_env(ROOT), "x86_64")


@pytest.fixture(scope="module")
def alpine(built: ApkResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = extract_alpine(default_cache(), tmp_path_factory.mktemp("alpine"))
    shutil.copytree(built.package.parent.parent, root / "tmp" / "dist")
    return root


def _inside(built: ApkResult, path: Path) -> str:
    return "/tmp/dist/" + str(path.relative_to(built.package.parent.parent))


def test_apk_verifies_the_package(built: ApkResult, alpine: Path) -> None:
    verify = apk(alpine, "verify", "--keys-dir", "/tmp/dist/keys", _inside(built, built.package))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    unknown = apk(alpine, "verify", "--keys-dir", "/etc/apk/keys", _inside(built, built.package))
    assert "UNTRUSTED signature" in unknown.stdout + unknown.stderr


def test_package_carries_server_launcher_service_and_licences(
    built: ApkResult, alpine: Path
) -> None:
    manifest = apk(alpine, "manifest", "--keys-dir", "/tmp/dist/keys",
                   _inside(built, built.package))  # fmt: skip
    assert manifest.returncode == 0, manifest.stderr
    listed = {line.split()[1]: line.split()[0] for line in manifest.stdout.splitlines()}
    binary = built.package.parent / "tmate-ssh-server"
    assert (
        listed["usr/bin/tmate-ssh-server"]
        == f"sha1:{hashlib.sha1(binary.read_bytes()).hexdigest()}"
    )
    assert "usr/bin/tmate-ssh-server-launch" in listed
    assert {"etc/init.d/tmate-ssh-server", "etc/conf.d/tmate-ssh-server"} <= set(listed)
    licences = {path.split("/")[3] for path in listed if path.startswith("usr/share/licenses/")}
    assert licences == {"tmate-ssh-server", "libssh", "mbedtls", "libevent", "ncurses",
                        "msgpack-c"}  # fmt: skip
    control = gzip.decompress(control_member(built.package.read_bytes())).decode(errors="replace")
    assert "pkgver = 2.3.0_git20230602-r0" in control
    assert "depend" not in control


def test_second_build_gives_the_same_bytes(built: ApkResult) -> None:
    first = built.package.read_bytes(), built.index.read_bytes()
    again = run_apk(layout_from_env(ROOT), "x86_64")
    assert (again.package.read_bytes(), again.index.read_bytes()) == first


def test_openrc_files_pass_alpine_shell_and_document_every_variable(alpine: Path) -> None:
    for name in ("tmate-ssh-server.initd", "tmate-ssh-server.confd"):
        shutil.copy(ROOT / "packaging" / "openrc" / name, alpine / "tmp" / name)
        check = subprocess.run(["chroot", str(alpine), "/bin/sh", "-n", f"/tmp/{name}"],
                               capture_output=True, text=True)  # fmt: skip
        assert check.returncode == 0, check.stderr
    confd = (ROOT / "packaging" / "openrc" / "tmate-ssh-server.confd").read_text()
    for variable in LAUNCHER_VARIABLES:
        assert f"#{variable}=" in confd


@pytest.fixture
def installed(built: ApkResult, alpine: Path) -> Path:
    """The package installed from the index into the Alpine root's own /, which has the
    busybox userland and the nobody user that the server drops to."""
    add = apk(alpine, "add", "--keys-dir", "/tmp/dist/keys", "--repository", "/tmp/dist",
              "tmate-ssh-server")  # fmt: skip
    assert add.returncode == 0, add.stdout + add.stderr
    return alpine


@pytest.fixture
def serving(installed: Path, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    require_tools("tmate", "ssh", "unshare")
    port = free_port()
    log = tmp_path / "launcher.log"
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "SSH_HOSTNAME": "127.0.0.1",
           "SSH_BIND_ADDRESS": "127.0.0.1", "SSH_PORT_LISTEN": str(port)}  # fmt: skip
    # As on a booted Alpine: /proc and /dev (ptys for the sessions) inside the root. A
    # private mount namespace keeps these mounts to this process; every exec keeps its pid.
    script = (
        f"mount -t proc proc {installed}/proc && mount --rbind /dev {installed}/dev && "
        f"exec chroot {installed} /usr/bin/tmate-ssh-server-launch"
    )
    with log.open("w") as sink:
        process = subprocess.Popen(["unshare", "--mount", "sh", "-c", script], env=env,
                                   stdout=sink, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_listening(process, port, log)
        yield port, log
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


def test_installed_server_serves_a_real_session(
    serving: tuple[int, Path], installed: Path, tmp_path: Path
) -> None:
    port, log = serving
    keys = installed / "etc" / "tmate-keys"
    assert keys.stat().st_mode & 0o777 == 0o700
    block = [line for line in log.read_text().splitlines() if "fingerprint" in line]
    fingerprints = Fingerprints(rsa=block[0].split()[-1], ed25519=block[1].split()[-1])
    with tmate_session("127.0.0.1", port, fingerprints, tmp_path / "client",
                       server_log=log) as session:  # fmt: skip
        assert viewer_sees(session, "MARKER-42")

"""The image stage with real buildah, on a stand-in package.

The package here is written by our own APK writer and holds small stand-in files where
the server and launcher would be: what is tested is how the stage turns any package
into an image (the files it keeps and adds, the config, the same bytes twice, what it
does with bad input), which needs no build of tmate-ssh-server. The real image is
checked by test_image_verify.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from plumbum import local

from tmate_forge.apkread import read_payload
from tmate_forge.apkv2 import Entry, PackageInfo, SigningKey, build_package
from tmate_forge.arch import Arch
from tmate_forge.errors import BuildError, ToolMissingError, VerifyError
from tmate_forge.image import REPOSITORY, ImageConfig, build_image, working_container
from tmate_forge.ocilayout import layer_files, read_image
from tmate_forge.rootfs import image_files

from .conftest import ROOT, require_tools

EPOCH = 1685715526  # 2023-06-02T14:18:46Z
PAYLOAD = [
    Entry(path="etc", mode=0o755, directory=True),
    Entry(path="etc/init.d", mode=0o755, directory=True),
    Entry(path="etc/init.d/tmate-ssh-server", mode=0o755, data=b"#!/sbin/openrc-run\n"),
    Entry(path="etc/conf.d", mode=0o755, directory=True),
    Entry(path="etc/conf.d/tmate-ssh-server", mode=0o644, data=b"SSH_PORT_LISTEN=2222\n"),
    Entry(path="usr", mode=0o755, directory=True),
    Entry(path="usr/bin", mode=0o755, directory=True),
    Entry(path="usr/bin/tmate-ssh-server", mode=0o755, data=b"stand-in server\n"),
    Entry(path="usr/bin/tmate-ssh-server-launch", mode=0o755, data=b"stand-in launcher\n"),
    Entry(path="usr/share", mode=0o755, directory=True),
    Entry(path="usr/share/licenses", mode=0o755, directory=True),
    Entry(path="usr/share/licenses/x", mode=0o755, directory=True),
    Entry(path="usr/share/licenses/x/COPYING", mode=0o644, data=b"licence text\n"),
]


@pytest.fixture(scope="module")
def key() -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return SigningKey(name="tests-0000.rsa.pub", private=private)


def write_package(folder: Path, key: SigningKey, entries: list[Entry] = PAYLOAD) -> Path:
    info = PackageInfo(
        pkgname="tmate-ssh-server", pkgver="2.3.0_git20230602-r0", pkgdesc="stand-in",
        url="https://example.invalid/", arch="x86_64", license="MIT",
        origin="tmate-ssh-server", builddate=EPOCH, packager="tests",
    )  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    package = folder / "tmate-ssh-server-2.3.0_git20230602-r0.apk"
    package.write_bytes(build_package(info, entries, key))
    return package


def config_for(package: Path, root: Path, arch: Arch = "x86_64") -> ImageConfig:
    return ImageConfig(
        arch=arch,
        package=package,
        version="2.3.0_git20230602-r0",
        revision="d7334ee4c3c8036c27fb35c7a24df3a88a15676b",
        source="https://tmate.io/",
        licenses="ISC AND MIT",
        created=EPOCH,
        work=root / "build" / arch,
        dist=root / "dist" / arch,
        load=False,
    )


@pytest.fixture
def buildah() -> None:
    require_tools("buildah")
    if os.geteuid() != 0:
        pytest.skip("buildah here runs as root (no user namespaces): run the tests as root")


def test_payload_is_read_back_from_the_package(tmp_path: Path, key: SigningKey) -> None:
    # The package holds its entries sorted by path.
    assert read_payload(write_package(tmp_path, key)) == sorted(PAYLOAD, key=lambda e: e.path)


def test_an_altered_package_is_refused(tmp_path: Path, key: SigningKey) -> None:
    package = write_package(tmp_path, key)
    other = write_package(tmp_path / "other", key, [*PAYLOAD[:-1], Entry(
        path="usr/share/licenses/x/COPYING", mode=0o644, data=b"altered\n")])  # fmt: skip
    # The first package's signature and control member, with the other's data member.
    first, second = package.read_bytes(), other.read_bytes()
    data_start = len(first) - _data_member_size(first)
    package.write_bytes(first[:data_start] + second[len(second) - _data_member_size(second) :])
    with pytest.raises(VerifyError, match=r"datahash.*altered after it was signed"):
        read_payload(package)
    package.write_bytes(first[: len(first) - 10])
    with pytest.raises(VerifyError, match="cut short"):
        read_payload(package)


def _data_member_size(package: bytes) -> int:
    rest = package
    for _ in range(2):
        inflater = zlib.decompressobj(31)
        inflater.decompress(rest)
        rest = inflater.unused_data
    return len(rest)


def test_image_files_drop_openrc_and_add_the_base_layout() -> None:
    files = {entry.path: entry for entry in image_files(PAYLOAD)}
    assert not [path for path in files if path.startswith(("etc/init.d", "etc/conf.d"))]
    assert files["tmp"].mode == 0o1777
    assert files["tmp"].directory
    assert files["etc/tmate-keys"].mode == 0o700
    passwd = files["etc/passwd"].data.decode()
    assert [line.split(":")[0] for line in passwd.splitlines()] == ["root", "nobody"]
    assert files["usr/bin/tmate-ssh-server"].data == b"stand-in server\n"
    assert list(files) == sorted(files)


def test_a_package_that_holds_base_layout_files_is_refused() -> None:
    clash = [*PAYLOAD, Entry(path="etc/passwd", mode=0o644, data=b"root::0:0::/:/bin/sh\n")]
    with pytest.raises(BuildError, match="etc/passwd: the package holds it"):
        image_files(clash)


@pytest.mark.usefixtures("buildah")
def test_two_builds_give_the_same_bytes(tmp_path: Path, key: SigningKey) -> None:
    package = write_package(tmp_path / "pkg", key)
    first = build_image(config_for(package, tmp_path / "a"))
    second = build_image(config_for(package, tmp_path / "b"))
    assert first.image.manifest_digest == second.image.manifest_digest
    assert first.archive.read_bytes() == second.archive.read_bytes()
    assert first.archive.name == "tmate-ssh-server-2.3.0_git20230602-r0.oci.tar"
    # Nothing is left behind: no scratch folder, no buildah working container.
    assert [p.name for p in (tmp_path / "a" / "build" / "x86_64").iterdir()] == []
    assert not first.loaded


@pytest.mark.usefixtures("buildah")
def test_config_and_annotations(tmp_path: Path, key: SigningKey) -> None:
    result = build_image(config_for(write_package(tmp_path / "pkg", key), tmp_path))
    image = read_image(result.archive)
    config = image.config["config"]
    assert config["Entrypoint"] == ["/usr/bin/tmate-ssh-server-launch"]
    assert "Cmd" not in config
    assert config["Env"] == ["LANG=C.UTF-8"]
    assert config["ExposedPorts"] == {"2222/tcp": {}}
    assert config["Volumes"] == {"/etc/tmate-keys": {}}
    assert config["StopSignal"] == "SIGTERM"
    assert "Labels" not in config  # no builder label: the bytes do not depend on buildah
    # No empty base.name and base.digest: the image has no base.
    assert not [key for key in image.manifest["annotations"] if ".base." in key]
    assert (image.config["os"], image.config["architecture"]) == ("linux", "amd64")
    assert image.config["created"] == "2023-06-02T14:18:46Z"
    annotations = image.manifest["annotations"]
    assert annotations["org.opencontainers.image.created"] == "2023-06-02T14:18:46Z"
    assert annotations["org.opencontainers.image.version"] == "2.3.0_git20230602-r0"
    assert annotations["org.opencontainers.image.revision"].startswith("d7334ee4")
    assert annotations["org.opencontainers.image.licenses"] == "ISC AND MIT"
    for field in ("title", "description", "source"):
        assert annotations[f"org.opencontainers.image.{field}"]
    assert [h["created_by"] for h in image.config["history"]] == [
        "tmate-forge image 2.3.0_git20230602-r0"
    ]


@pytest.mark.usefixtures("buildah")
def test_the_layer_holds_exactly_the_image_files(tmp_path: Path, key: SigningKey) -> None:
    result = build_image(config_for(write_package(tmp_path / "pkg", key), tmp_path))
    found = {
        info.name.rstrip("/"): (info.mode & 0o7777, info.uid, info.mtime, data)
        for _, info, data in layer_files(result.archive)
    }
    expected = {e.path: (e.mode, 0, EPOCH, e.data) for e in image_files(PAYLOAD)}
    assert found == expected


@pytest.mark.usefixtures("buildah")
def test_aarch64_platform(tmp_path: Path, key: SigningKey) -> None:
    result = build_image(config_for(write_package(tmp_path / "pkg", key), tmp_path, "aarch64"))
    config = read_image(result.archive).config
    assert (config["architecture"], config["variant"]) == ("arm64", "v8")
    assert result.name.endswith("-aarch64") == (os.uname().machine != "aarch64")


@pytest.mark.usefixtures("buildah")
def test_a_failed_build_keeps_the_previous_archive(tmp_path: Path, key: SigningKey) -> None:
    package = write_package(tmp_path / "pkg", key)
    good = build_image(config_for(package, tmp_path))
    before = good.archive.read_bytes()
    package.write_bytes(package.read_bytes()[:-100])
    with pytest.raises(VerifyError, match=re.escape(str(package))):
        build_image(config_for(package, tmp_path))
    assert good.archive.read_bytes() == before
    assert [p.name for p in good.archive.parent.iterdir()] == [good.archive.name]
    assert [p.name for p in (tmp_path / "build" / "x86_64").iterdir()] == []
    assert working_container(tmp_path / "build" / "x86_64") not in _container_names()


@pytest.mark.usefixtures("buildah")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("during", ["$ buildah add", "$ buildah commit"])
def test_an_interrupted_build_leaves_nothing_behind(
    tmp_path: Path, key: SigningKey, sig: signal.Signals, during: str
) -> None:
    """SIGINT or SIGTERM while buildah runs, with the handler the command line installs:
    no archive, no scratch folder, no working container. The real buildah runs behind a
    wrapper that waits 2 s first, so that the signal lands while that step runs."""
    package = write_package(tmp_path / "pkg", key)
    slow = tmp_path / "slow-bin"
    slow.mkdir()
    (slow / "buildah").write_text(f'#!/bin/sh\nsleep 2\nexec {shutil.which("buildah")} "$@"\n')
    (slow / "buildah").chmod(0o755)
    script = f"""
import pathlib, signal, sys
sys.path[:0] = [{str(ROOT)!r}]
from tests.test_image_build import config_for
from tmate_forge.cli import _raise_terminated
from tmate_forge.image import build_image
signal.signal(signal.SIGTERM, _raise_terminated)
# As at a terminal, even when this run inherited SIGINT ignored (a script's background job).
signal.signal(signal.SIGINT, signal.default_int_handler)
build_image(config_for(pathlib.Path({str(package)!r}), pathlib.Path({str(tmp_path)!r})))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PATH": f"{slow}:{os.environ['PATH']}"}
    process = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE,
                               text=True, env=env)  # fmt: skip
    assert process.stderr is not None
    for line in process.stderr:
        if during in line:  # the working container exists from buildah add on
            process.send_signal(sig)
            break
    process.communicate(timeout=60)
    assert process.returncode != 0
    assert not (tmp_path / "dist" / "x86_64").exists() or not list(
        (tmp_path / "dist" / "x86_64").iterdir()
    )
    assert list((tmp_path / "build" / "x86_64").iterdir()) == []
    # By its name: other buildah users on the machine may have containers of their own.
    assert working_container(tmp_path / "build" / "x86_64") not in _container_names()


@pytest.mark.usefixtures("buildah")
def test_the_archive_names_its_architecture(tmp_path: Path, key: SigningKey) -> None:
    """`podman load -i` uses this name: an aarch64 archive must not take the plain tag."""
    result = build_image(config_for(write_package(tmp_path / "pkg", key), tmp_path, "aarch64"))
    with tarfile.open(result.archive) as archive:
        index = json.loads(archive.extractfile("index.json").read())  # type: ignore[union-attr]
    (reference,) = [m["annotations"]["org.opencontainers.image.ref.name"]
                    for m in index["manifests"]]  # fmt: skip
    assert reference == "localhost/tmate-ssh-server:2.3.0_git20230602-r0-aarch64"


@pytest.mark.usefixtures("buildah")
def test_a_failed_load_keeps_the_archive_and_says_how_to_load(
    tmp_path: Path, key: SigningKey, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A stand-in skopeo that fails (the real one cannot be made to fail on demand), put
    first on PATH: the stage still delivers its archive."""
    fake = tmp_path / "fake-bin"
    fake.mkdir()
    (fake / "skopeo").write_text("#!/bin/sh\necho 'storage is read-only' >&2\nexit 1\n")
    (fake / "skopeo").chmod(0o755)
    path = f"{fake}:{os.environ['PATH']}"
    monkeypatch.setenv("PATH", path)
    config = config_for(write_package(tmp_path / "pkg", key), tmp_path)
    # A version of its own: should the stand-in not be used, no real tag is replaced.
    config = ImageConfig(**{**vars(config), "version": "0.0.0_test-r0", "load": True})
    with local.env(PATH=path):  # plumbum keeps its own copy of the environment
        try:
            result = build_image(config)
        finally:
            subprocess.run(["podman", "rmi", f"{REPOSITORY}:0.0.0_test-r0"],
                           capture_output=True, check=False)  # fmt: skip
    assert result.archive.is_file()
    assert not result.loaded
    err = capsys.readouterr().err
    assert "WARNING: the image was not loaded" in err
    assert f"podman load -i {result.archive}" in err


def test_missing_buildah_is_named(tmp_path: Path, key: SigningKey,
                                  monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ToolMissingError, match=r"buildah: not found.*") as caught:
        build_image(config_for(write_package(tmp_path / "pkg", key), tmp_path))
    assert "apt-get install buildah" in str(caught.value)


@pytest.mark.usefixtures("buildah")
def test_the_archive_is_an_oci_layout(tmp_path: Path, key: SigningKey) -> None:
    result = build_image(config_for(write_package(tmp_path / "pkg", key), tmp_path))
    with tarfile.open(result.archive) as archive:
        names = archive.getnames()
        layout = json.loads(archive.extractfile("oci-layout").read())  # type: ignore[union-attr]
        members = archive.getmembers()
    assert layout == {"imageLayoutVersion": "1.0.0"}
    assert "index.json" in names
    assert {(m.mtime, m.uid, m.uname) for m in members} == {(EPOCH, 0, "root")}


@pytest.mark.usefixtures("buildah")
@pytest.mark.parametrize("damage", ["cut", "garbage"])
def test_a_damaged_archive_is_named_not_a_traceback(
    tmp_path: Path, key: SigningKey, damage: str
) -> None:
    archive = build_image(config_for(write_package(tmp_path / "pkg", key), tmp_path)).archive
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2] if damage == "cut" else os.urandom(5000))
    with pytest.raises(VerifyError, match=rf"{re.escape(str(archive))}: not a readable oci-arch"):
        read_image(archive)


@pytest.mark.usefixtures("buildah")
def test_a_container_left_by_a_killed_run_is_removed(tmp_path: Path, key: SigningKey) -> None:
    """A SIGKILL cannot run the clean-up; the next run of the same build folder removes
    the working container that one left, by its name."""
    config = config_for(write_package(tmp_path / "pkg", key), tmp_path)
    name = working_container(config.work)
    subprocess.run(["buildah", "from", "--quiet", "--name", name, "scratch"],
                   capture_output=True, check=True)  # fmt: skip
    try:
        assert name in _container_names()
        build_image(config)
        assert name not in _container_names()
    finally:
        subprocess.run(["buildah", "rm", name], capture_output=True, check=False)


def _container_names() -> list[str]:
    out = subprocess.run(["buildah", "containers", "--format", "{{.ContainerName}}"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return out.stdout.split()

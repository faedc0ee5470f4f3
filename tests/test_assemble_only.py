"""`release --assemble-only` over the real per-architecture artifacts, whole and damaged.

The release CI's last job assembles what the per-architecture jobs left in dist/ARCH.
These tests build both architectures through the image stage (aarch64 takes minutes
the first time), copy dist/ARCH and dist/keys into a scratch checkout, and damage one
file at a time: each must stop the release, naming the file, before SHA256SUMS exists.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tmate_forge.apkindex import control_member
from tmate_forge.apkread import signer
from tmate_forge.apkv2 import SigningKey, signature_member
from tmate_forge.arch import ARCHES
from tmate_forge.errors import UsageError, VerifyError
from tmate_forge.layout import layout_from_env
from tmate_forge.pipeline import run_image, run_release
from tmate_forge.signing import public_pem
from tmate_forge.sourcebundle import BUILD_FILES

from .conftest import NEEDS_MIRROR, ROOT, mirror_with_tmate, require_tools

pytestmark = [pytest.mark.toolchain, pytest.mark.mirror]


@pytest.fixture(scope="module")
def built() -> dict[str, Path]:
    """Each architecture's archive in the real dist/, current."""
    if mirror_with_tmate() is None:
        pytest.skip(NEEDS_MIRROR)
    require_tools("buildah")
    layout = layout_from_env(ROOT)
    return {arch: run_image(layout, arch, load=False).archive for arch in ARCHES}


@pytest.fixture
def checkout(built: dict[str, Path], tmp_path: Path) -> Path:
    """A scratch checkout whose dist/ holds what the per-architecture jobs would leave."""
    root = tmp_path / "checkout"
    root.mkdir()
    for name in BUILD_FILES:
        source = ROOT / name
        if source.is_dir():
            skipped = shutil.ignore_patterns("__pycache__", "*.egg-info")
            shutil.copytree(source, root / name, ignore=skipped)
        else:
            shutil.copy2(source, root / name)
    for arch, archive in built.items():
        shutil.copytree(archive.parent, root / "dist" / arch)
    key = signer(next(built["x86_64"].parent.glob("*.apk")), ROOT / "dist" / "keys")
    (root / "dist" / "keys").mkdir()
    shutil.copy2(key, root / "dist" / "keys" / key.name)
    return root


def test_whole_artifacts_are_assembled(checkout: Path) -> None:
    result = run_release(layout_from_env(checkout), assemble_only=True)
    assert result is not None
    listed = result.sums.read_text()
    key = next((checkout / "dist" / "keys").iterdir())
    assert f"  keys/{key.name}\n" in listed
    assert len(listed.splitlines()) == 32


def _cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


def _foreign_key(checkout: Path) -> None:
    """The signer's name in dist/keys, but another key's public half under it."""
    key = next((checkout / "dist" / "keys").iterdir())
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key.write_bytes(public_pem(other))


def _aarch64_signed_by_another_key(checkout: Path) -> None:
    """aarch64's package and index signed again, by a second key whose public half is
    in dist/keys too: each verifies, but the two architectures disagree."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = SigningKey(name="tests-other.rsa.pub", private=private)
    (checkout / "dist" / "keys" / other.name).write_bytes(public_pem(private))
    folder = checkout / "dist" / "aarch64"
    package = next(folder.glob("*.apk"))
    unsigned = _after_signature(package.read_bytes())  # control and data
    package.write_bytes(signature_member(other, control_member(package.read_bytes())) + unsigned)
    index = folder / "APKINDEX.tar.gz"
    unsigned = _after_signature(index.read_bytes())
    index.write_bytes(signature_member(other, unsigned) + unsigned)


def _after_signature(data: bytes) -> bytes:
    """What follows the first gzip member, the signature."""
    stream = zlib.decompressobj(wbits=31)
    stream.decompress(data)
    return stream.unused_data


def _manifest(checkout: Path, arch: str, change: Callable[[dict[str, Any]], None]) -> None:
    path = checkout / "dist" / arch / "tmate-ssh-server.manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def _not_elf(checkout: Path) -> None:
    """A shell script as the server, with the manifest made to agree."""
    binary = checkout / "dist" / "x86_64" / "tmate-ssh-server"
    binary.write_text("#!/bin/sh\necho fake\n")
    digest = hashlib.sha256(binary.read_bytes()).hexdigest()
    _manifest(checkout, "x86_64",
              lambda m: m["artifacts"]["tmate-ssh-server"].update(sha256=digest))  # fmt: skip


def _older_libssh(manifest: dict[str, Any]) -> None:
    next(c for c in manifest["components"] if c["name"] == "libssh")["version"] = "0.10.0"


def _second_layer(checkout: Path) -> None:
    """A layer on top of the image, made with buildah, with another /usr/bin server."""
    archive = next((checkout / "dist" / "x86_64").glob("*.oci.tar"))
    fake = checkout / "fake-server"
    fake.write_text("#!/bin/sh\necho fake\n")
    fake.chmod(0o755)
    container = _buildah("from", "--quiet", f"oci-archive:{archive}")
    try:
        _buildah("add", "--quiet", container, str(fake), "/usr/bin/tmate-ssh-server")
        _buildah("commit", "--quiet", container, f"oci-archive:{archive}")
    finally:
        _buildah("rm", container)


def _buildah(*args: str) -> str:
    return subprocess.run(["buildah", *args], capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip


DAMAGE: dict[str, tuple[Callable[[Path], object], str, type[Exception]]] = {
    "apk-cut": (lambda c: _cut(next((c / "dist" / "x86_64").glob("*.apk"))),
                r"release \[x86_64\]: .*\.apk: gzip member \d is cut short", VerifyError),
    "index-emptied": (lambda c: (c / "dist" / "aarch64" / "APKINDEX.tar.gz").write_bytes(b""),
                      r"release \[aarch64\]: .*APKINDEX.tar.gz: expected a signature and what",
                      VerifyError),
    "x86-binary-in-aarch64": (
        lambda c: shutil.copy2(c / "dist" / "x86_64" / "tmate-ssh-server",
                               c / "dist" / "aarch64" / "tmate-ssh-server"),
        r"release \[aarch64\]: .*/tmate-ssh-server: tmate-ssh-server.manifest.json records",
        VerifyError),
    "x86-image-in-aarch64": (
        lambda c: [shutil.copy2(p, c / "dist" / "aarch64" / p.name)
                   for p in (c / "dist" / "x86_64").glob("*.oci.tar")],
        r"release \[aarch64\]: .*\.oci\.tar: architecture: expected 'arm64', found 'amd64'",
        VerifyError),
    "image-cut": (lambda c: _cut(next((c / "dist" / "x86_64").glob("*.oci.tar"))),
                  r"release \[x86_64\]: .*\.oci\.tar: index.json is missing from the OCI",
                  VerifyError),
    "foreign-key": (_foreign_key, r"release \[x86_64\]: .*\.apk: its signature does not verify",
                    VerifyError),
    "no-key": (lambda c: shutil.rmtree(c / "dist" / "keys"),
               r"release \[x86_64\]: .*\.apk: signed by '.*', which is not in", VerifyError),
    "another-key-for-aarch64": (_aarch64_signed_by_another_key,
                                r"release: the packages are signed by different keys",
                                VerifyError),
    "not-elf": (_not_elf, r"release \[x86_64\]: .*/tmate-ssh-server: not an ELF file",
                VerifyError),
    "manifest-lies": (lambda c: _manifest(c, "aarch64", _older_libssh),
                      r"release \[aarch64\]: .*component 'libssh': version: .*libssh.toml pins "
                      r"'0.11.5', the build recorded '0.10.0'", VerifyError),
    "second-layer": (_second_layer,
                     r"release \[x86_64\]: .*\.oci\.tar: expected the one layer .*, found 2",
                     VerifyError),
    "launcher-missing": (lambda c: (c / "dist" / "aarch64" / "tmate-ssh-server-launch").unlink(),
                         r"release \[aarch64\]: --assemble-only: missing, or not a file, in dist",
                         UsageError),
}  # fmt: skip


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_a_damaged_artifact_stops_the_release(checkout: Path, damage: str) -> None:
    spoil, message, error = DAMAGE[damage]
    spoil(checkout)
    with pytest.raises(error, match=message):
        run_release(layout_from_env(checkout), assemble_only=True)
    dist = checkout / "dist"
    assert not (dist / "SHA256SUMS").exists()
    assert not list(dist.glob("*.oci.tar"))

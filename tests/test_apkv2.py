"""Packages written by tmate_forge.apkv2, judged by the real apk-tools of Alpine."""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tmate_forge.apkindex import IndexedPackage, build_index
from tmate_forge.apkv2 import (
    Entry,
    PackageInfo,
    SigningKey,
    build_package,
    installed_size,
    signature_member,
)
from tmate_forge.layout import default_cache

from .alpine import apk, extract_alpine

SCRIPT = b"#!/bin/sh\necho hello from tmate-forge\n"
INFO = PackageInfo(
    pkgname="forge-hello", pkgver="1.0_git20230602-r0", pkgdesc="apkv2 test package",
    url="https://example.invalid/", arch="x86_64", license="MIT", origin="forge-hello",
    builddate=1685664000, packager="tmate-forge tests <tests@example.invalid>",
)  # fmt: skip
ENTRIES = [
    Entry(path="usr", mode=0o755, directory=True),
    Entry(path="usr/bin", mode=0o755, directory=True),
    Entry(path="usr/bin/forge-hello", mode=0o755, data=SCRIPT),
    Entry(path="usr/bin/forge-hi", mode=0o777, link="forge-hello"),
]


def _key(name: str) -> SigningKey:
    return SigningKey(name=name, private=rsa.generate_private_key(public_exponent=65537,
                                                                   key_size=2048))  # fmt: skip


def _trust(root: Path, key: SigningKey) -> None:
    keys = root / "tmp" / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    public = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (keys / key.name).write_bytes(public)


@pytest.fixture(scope="module")
def alpine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return extract_alpine(default_cache(), tmp_path_factory.mktemp("alpine"))


@pytest.fixture(scope="module")
def trusted() -> SigningKey:
    return _key("tmate-forge-test.rsa.pub")


@pytest.fixture
def package(alpine: Path, trusted: SigningKey) -> Path:
    _trust(alpine, trusted)
    path = alpine / "tmp" / "forge-hello-1.0_git20230602-r0.apk"
    path.write_bytes(build_package(INFO, ENTRIES, trusted))
    return path


def test_apk_verifies_and_installs_the_package(alpine: Path, package: Path) -> None:
    verify = apk(alpine, "verify", "--keys-dir", "/tmp/keys", f"/tmp/{package.name}")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stdout.strip().endswith("OK")

    add = apk(alpine, "add", "--root", "/tmp/newroot", "--initdb", "--keys-dir", "/tmp/keys",
              f"/tmp/{package.name}")  # fmt: skip
    assert add.returncode == 0, add.stdout + add.stderr
    assert "Installing forge-hello (1.0_git20230602-r0)" in add.stdout
    installed = alpine / "tmp" / "newroot" / "usr" / "bin"
    assert (installed / "forge-hello").read_bytes() == SCRIPT
    assert (installed / "forge-hi").readlink() == Path("forge-hello")


def test_apk_manifest_lists_our_checksums(alpine: Path, package: Path) -> None:
    manifest = apk(alpine, "manifest", "--keys-dir", "/tmp/keys", f"/tmp/{package.name}")
    assert manifest.returncode == 0, manifest.stderr
    expected = f"sha1:{hashlib.sha1(SCRIPT).hexdigest()}  usr/bin/forge-hello"
    assert expected in manifest.stdout.splitlines()


def _members(data: bytes) -> list[bytes]:
    """The raw gzip members of a package, in order."""
    members, rest = [], data
    while rest:
        stream = zlib.decompressobj(wbits=31)
        stream.decompress(rest)
        used = len(rest) - len(stream.unused_data)
        members.append(rest[:used])
        rest = stream.unused_data
    return members


def test_three_gzip_members_and_the_same_bytes_twice(trusted: SigningKey) -> None:
    first = build_package(INFO, ENTRIES, trusted)
    assert build_package(INFO, ENTRIES, trusted) == first
    signature, control, data = _members(first)
    assert gzip.decompress(control).startswith(b".PKGINFO")
    assert b"pkgver = 1.0_git20230602-r0\n" in gzip.decompress(control)
    assert b"APK-TOOLS.checksum.SHA1=" in gzip.decompress(data)
    assert gzip.decompress(signature).startswith(b".SIGN.RSA256.tmate-forge-test.rsa.pub")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("data-byte", "invalid"),
        ("control", "BAD signature"),
        ("unknown-key", "UNTRUSTED signature"),
    ],
)
def test_tampered_copies_are_refused(
    alpine: Path, package: Path, trusted: SigningKey, damage: str, message: str
) -> None:
    signature, control, data = _members(package.read_bytes())
    if damage == "data-byte":
        broken = bytearray(data)
        broken[len(broken) // 2] ^= 0x01
        data = bytes(broken)
    elif damage == "control":
        text = gzip.decompress(control).replace(b"apkv2 test package", b"apkv2 evil package")
        control = gzip.compress(text, mtime=0)
    else:
        signature = signature_member(_key("stranger.rsa.pub"), control)
    tampered = package.with_name(f"tampered-{damage}.apk")
    tampered.write_bytes(signature + control + data)
    verify = apk(alpine, "verify", "--keys-dir", "/tmp/keys", f"/tmp/{tampered.name}")
    assert verify.returncode != 0, verify.stdout
    assert message in verify.stdout + verify.stderr
    add = apk(alpine, "add", "--root", f"/tmp/root-{damage}", "--initdb", "--keys-dir",
              "/tmp/keys", f"/tmp/{tampered.name}")  # fmt: skip
    assert add.returncode != 0, add.stdout


def test_signed_index_serves_the_package_from_a_folder(
    alpine: Path, package: Path, trusted: SigningKey
) -> None:
    repo = alpine / "tmp" / "repo" / "x86_64"
    repo.mkdir(parents=True, exist_ok=True)
    (repo / package.name).write_bytes(package.read_bytes())
    entry = IndexedPackage(info=INFO, package=package.read_bytes(),
                           installed_size=installed_size(ENTRIES))  # fmt: skip
    index = build_index([entry], trusted, INFO.builddate)
    assert build_index([entry], trusted, INFO.builddate) == index
    (repo / "APKINDEX.tar.gz").write_bytes(index)
    add = apk(alpine, "add", "--root", "/tmp/from-repo", "--initdb", "--keys-dir", "/tmp/keys",
              "--repository", "/tmp/repo", "forge-hello")  # fmt: skip
    assert add.returncode == 0, add.stdout + add.stderr
    assert (alpine / "tmp" / "from-repo" / "usr" / "bin" / "forge-hello").read_bytes() == SCRIPT

    (repo / "APKINDEX.tar.gz").write_bytes(_members(index)[1])  # the index without signature
    refused = apk(alpine, "add", "--root", "/tmp/from-unsigned", "--initdb", "--keys-dir",
                  "/tmp/keys", "--repository", "/tmp/repo", "forge-hello")  # fmt: skip
    assert refused.returncode != 0
    assert "UNTRUSTED signature" in refused.stdout + refused.stderr

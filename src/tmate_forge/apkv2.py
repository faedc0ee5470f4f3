"""The Alpine APK v2 format: three gzip members (signature, control, data) in one file.

The control member is a tar of .PKGINFO, the data member a tar of the payload in which
every regular file and symlink is preceded by a PAX header carrying its SHA-1, and the
signature member a tar of one entry, an RSA PKCS#1 v1.5 signature over the compressed
control member. The signature and control tars carry no end-of-archive blocks; the data
tar does. apk-tools' doc/apk-v2.5 and abuild's create_apks describe the same layout.
Everything here is deterministic: fixed mtimes and owners, gzip without a timestamp.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

_BLOCK = 512
# The file name of a public key as apk finds it in /etc/apk/keys, and as it stands in a
# signature entry and in SHA256SUMS: one plain word, so that it can break none of them.
SIGNATURE_PREFIX = ".SIGN.RSA256."  # and the key's name: the signature entry of a member
KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+@-]*\.rsa\.pub")  # abuild-keygen: EMAIL-HEX.rsa


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One path of the payload, relative to / (no leading slash)."""

    path: str
    mode: int
    data: bytes = b""  # a regular file's content
    directory: bool = False
    link: str = ""  # a symlink's target


@dataclass(frozen=True, kw_only=True)
class PackageInfo:
    pkgname: str
    pkgver: str  # Alpine's form, with the release: 2.3.0_git20230602-r0
    pkgdesc: str
    url: str
    arch: str
    license: str
    origin: str
    builddate: int  # seconds since the epoch, from SOURCE_DATE_EPOCH
    packager: str


@dataclass(frozen=True, kw_only=True)
class SigningKey:
    name: str  # the public key's file name in /etc/apk/keys, e.g. tmate-forge-1a2b.rsa.pub
    private: rsa.RSAPrivateKey


def _tar_member(info: tarfile.TarInfo, data: bytes = b"") -> bytes:
    """One tar member as bytes (PAX format when it has PAX headers), padded to a block."""
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if info.pax_headers:
        header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    else:
        header = info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")
    return header + data + b"\0" * (-len(data) % _BLOCK)


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=0)


def data_tar(entries: Sequence[Entry], mtime: int) -> bytes:
    """The payload tar, sorted by path, each file and symlink with its SHA-1 PAX header."""
    out = io.BytesIO()
    for entry in sorted(entries, key=lambda e: e.path):
        info = tarfile.TarInfo(entry.path)
        info.mode, info.mtime = entry.mode, mtime
        if entry.directory:
            info.type = tarfile.DIRTYPE
        elif entry.link:
            info.type, info.linkname = tarfile.SYMTYPE, entry.link
            checksum = hashlib.sha1(entry.link.encode(), usedforsecurity=False).hexdigest()
            info.pax_headers = {"APK-TOOLS.checksum.SHA1": checksum}
        else:
            info.size = len(entry.data)
            checksum = hashlib.sha1(entry.data, usedforsecurity=False).hexdigest()
            info.pax_headers = {"APK-TOOLS.checksum.SHA1": checksum}
        out.write(_tar_member(info, entry.data if info.isreg() else b""))
    out.write(b"\0" * (2 * _BLOCK))
    return out.getvalue()


def pkginfo_text(info: PackageInfo, installed_size: int, datahash: str) -> bytes:
    lines = [
        f"pkgname = {info.pkgname}",
        f"pkgver = {info.pkgver}",
        f"pkgdesc = {info.pkgdesc}",
        f"url = {info.url}",
        f"builddate = {info.builddate}",
        f"packager = {info.packager}",
        f"size = {installed_size}",
        f"arch = {info.arch}",
        f"origin = {info.origin}",
        f"license = {info.license}",
        f"datahash = {datahash}",
    ]
    return ("\n".join(lines) + "\n").encode()


def _single_entry_tar(name: str, data: bytes, mtime: int) -> bytes:
    """A tar of one file with no end-of-archive blocks, as the control and signature want."""
    info = tarfile.TarInfo(name)
    info.mode, info.mtime, info.size = 0o644, mtime, len(data)
    return _tar_member(info, data)


def signature_member(key: SigningKey, signed: bytes) -> bytes:
    signature = key.private.sign(signed, padding.PKCS1v15(), hashes.SHA256())
    return _gzip(_single_entry_tar(f"{SIGNATURE_PREFIX}{key.name}", signature, 0))


def installed_size(entries: Sequence[Entry]) -> int:
    """The `size` of .PKGINFO: the bytes the files take once installed."""
    return sum(len(e.data) for e in entries)


def build_package(info: PackageInfo, entries: Sequence[Entry], key: SigningKey) -> bytes:
    """The bytes of a signed APK v2 package; the same inputs give the same bytes."""
    data = _gzip(data_tar(entries, info.builddate))
    pkginfo = pkginfo_text(info, installed_size(entries), hashlib.sha256(data).hexdigest())
    control = _gzip(_single_entry_tar(".PKGINFO", pkginfo, info.builddate))
    return signature_member(key, control) + control + data

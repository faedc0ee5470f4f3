"""A signed APKINDEX.tar.gz, so that `apk add --repository DIR` finds our package.

The index is one gzip member holding a tar with one file, APKINDEX: a paragraph of
`X:value` lines per package. `C:` is "Q1" and the base64 SHA-1 of the package's
compressed control member, which is how apk ties the entry to the file it fetches. The
signature, a gzip member like a package's, signs the whole index file and goes first.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import tarfile
import zlib
from dataclasses import dataclass

from .apkv2 import PackageInfo, SigningKey, signature_member


@dataclass(frozen=True, kw_only=True)
class IndexedPackage:
    info: PackageInfo
    package: bytes  # the whole .apk file
    installed_size: int


def control_member(package: bytes) -> bytes:
    """The second gzip member of a package: its control tar, compressed as written."""
    rest = package
    for _ in range(2):
        stream = zlib.decompressobj(wbits=31)
        stream.decompress(rest)
        member, rest = rest[: len(rest) - len(stream.unused_data)], stream.unused_data
    return member


def package_checksum(package: bytes) -> str:
    """The value of a package's C: line: Q1 and the base64 SHA-1 of its control member."""
    digest = hashlib.sha1(control_member(package), usedforsecurity=False).digest()
    return "Q1" + base64.b64encode(digest).decode()


def index_entry(entry: IndexedPackage) -> str:
    info = entry.info
    name, version = info.pkgname, info.pkgver
    return "".join(
        f"{key}:{value}\n"
        for key, value in (
            ("C", package_checksum(entry.package)),
            ("P", name), ("V", version), ("A", info.arch), ("S", len(entry.package)),
            ("I", entry.installed_size), ("T", info.pkgdesc), ("U", info.url),
            ("L", info.license), ("o", info.origin), ("t", info.builddate),
        )
    )  # fmt: skip


def build_index(entries: list[IndexedPackage], key: SigningKey, mtime: int) -> bytes:
    text = "\n".join(index_entry(e) for e in sorted(entries, key=lambda e: e.info.pkgname))
    data = (text + "\n").encode()
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        info = tarfile.TarInfo("APKINDEX")
        info.size, info.mtime, info.mode = len(data), mtime, 0o644
        archive.addfile(info, io.BytesIO(data))
    index = gzip.compress(tar.getvalue(), compresslevel=9, mtime=0)
    return signature_member(key, index) + index

"""Reading the payload back out of an APK v2 package, checked against its own .PKGINFO.

The image stage takes its files from the package rather than from the build folder, so
the package and the image cannot drift apart. The package is checked on the way: three
gzip members, and the data member's SHA-256 equal to the `datahash` its control member
declares (the signature over that control member is apk-tools' job, and the tests').
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import zlib
from pathlib import Path

from .apkv2 import Entry
from .errors import VerifyError

_TIP = "rebuild it with `nox -s apk -- --arch ARCH`"


def _gzip_members(path: Path, data: bytes) -> list[tuple[bytes, bytes]]:
    """Each gzip member as (its compressed bytes, its content)."""
    members: list[tuple[bytes, bytes]] = []
    rest = data
    while rest:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            content = inflater.decompress(rest)
        except zlib.error as err:
            raise VerifyError(f"{path}: gzip member {len(members) + 1} is damaged: {err}",
                              tip=_TIP) from err  # fmt: skip
        if not inflater.eof:
            raise VerifyError(f"{path}: gzip member {len(members) + 1} is cut short", tip=_TIP)
        members.append((rest[: len(rest) - len(inflater.unused_data)], content))
        rest = inflater.unused_data
    return members


def _pkginfo(path: Path, control: bytes) -> dict[str, str]:
    # The control tar has no end-of-archive blocks: read its first member by hand.
    header = tarfile.TarInfo.frombuf(control[:512], "utf-8", "surrogateescape")
    if header.name != ".PKGINFO":
        raise VerifyError(f"{path}: control member: expected .PKGINFO first, found "
                          f"{header.name!r}", tip=_TIP)  # fmt: skip
    text = control[512 : 512 + header.size].decode()
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(" = ")
        fields[key] = value
    return fields


def read_payload(path: Path) -> list[Entry]:
    """The files, folders and links of the package at path, in the order it holds them."""
    members = _gzip_members(path, path.read_bytes())
    if len(members) != 3:
        raise VerifyError(f"{path}: expected 3 gzip members (signature, control, data), "
                          f"found {len(members)}", tip=_TIP)  # fmt: skip
    (_, _), (_, control), (data_gz, data) = members
    declared = _pkginfo(path, control).get("datahash", "")
    actual = hashlib.sha256(data_gz).hexdigest()
    if declared != actual:
        raise VerifyError(
            f"{path}: .PKGINFO datahash: expected the data member's SHA-256 {actual}, "
            f"found {declared or 'none'}: the package was altered after it was signed",
            tip=_TIP,
        )
    entries = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
        for member in archive:
            if member.isdir():
                entries.append(Entry(path=member.name, mode=member.mode, directory=True))
            elif member.issym():
                entries.append(Entry(path=member.name, mode=member.mode, link=member.linkname))
            elif member.isreg():
                content = archive.extractfile(member)
                assert content is not None
                entries.append(Entry(path=member.name, mode=member.mode, data=content.read()))
            else:
                raise VerifyError(f"{path}: {member.name}: unexpected tar entry type "
                                  f"{member.type!r} in the payload", tip=_TIP)  # fmt: skip
    return entries

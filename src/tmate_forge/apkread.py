"""Reading the payload back out of an APK v2 package, checked against its own .PKGINFO.

The image stage takes its files from the package rather than from the build folder, so
the package and the image cannot drift apart. The package is checked on the way: three
gzip members, and the data member's SHA-256 equal to the `datahash` its control member
declares. `signer` checks the signature over the control member (or over an index) with
the public keys of a folder, as apk does, for a release assembled from another job's files.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import zlib
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .apkv2 import KEY_NAME, SIGNATURE_PREFIX, Entry
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


def signer(path: Path, keys: Path, *, index: bool = False) -> Path:
    """The public key in keys whose RSA-SHA256 signature the package at path carries over
    its control member, or the index at path (index=True) over all that follows."""
    members = _gzip_members(path, path.read_bytes())
    name, signature = _signature(path, members)
    if not KEY_NAME.fullmatch(name):
        raise VerifyError(f"{path}: signed by {name!r}, which is no key file name", tip=_TIP)
    key = keys / name
    if not key.is_file():
        raise VerifyError(f"{path}: signed by {name!r}, which is not in {keys}",
                          tip="put the public half of the key that signed it there")  # fmt: skip
    try:
        public = serialization.load_pem_public_key(key.read_bytes())
    except ValueError as err:
        raise VerifyError(f"{key}: not a PEM public key: {err}", tip=_TIP) from err
    if not isinstance(public, rsa.RSAPublicKey):
        raise VerifyError(f"{key}: not an RSA public key", tip=_TIP)

    signed = b"".join(m[0] for m in members[1:]) if index else members[1][0]
    try:
        public.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature as err:
        raise VerifyError(f"{path}: its signature does not verify with {key}", tip=_TIP) from err
    return key


def _signature(path: Path, members: list[tuple[bytes, bytes]]) -> tuple[str, bytes]:
    """The key name and the signature in the first member, a cut tar of one entry."""
    if len(members) < 2:
        raise VerifyError(f"{path}: expected a signature and what it signs, found "
                          f"{len(members)} gzip members", tip=_TIP)  # fmt: skip
    content = members[0][1]
    try:
        header = tarfile.TarInfo.frombuf(content[:512], "utf-8", "surrogateescape")
    except tarfile.HeaderError as err:
        raise VerifyError(f"{path}: the first member is no signature: {err}", tip=_TIP) from err
    if not header.name.startswith(SIGNATURE_PREFIX):
        raise VerifyError(f"{path}: expected a {SIGNATURE_PREFIX}NAME signature first, found "
                          f"{header.name!r}", tip=_TIP)  # fmt: skip
    return header.name.removeprefix(SIGNATURE_PREFIX), content[512 : 512 + header.size]


def index_text(path: Path) -> str:
    """The APKINDEX file inside a signed APKINDEX.tar.gz: the member after the signature."""
    members = _gzip_members(path, path.read_bytes())
    if len(members) != 2:
        raise VerifyError(f"{path}: expected 2 gzip members (signature, index), found "
                          f"{len(members)}", tip=_TIP)  # fmt: skip
    try:
        with tarfile.open(fileobj=io.BytesIO(members[1][1]), mode="r:") as tar:
            content = tar.extractfile("APKINDEX")
            return content.read().decode() if content else ""
    except (tarfile.TarError, KeyError, UnicodeDecodeError) as err:
        raise VerifyError(f"{path}: no readable APKINDEX in it: {err}", tip=_TIP) from err

"""OCI image layouts: packed into an oci-archive byte for byte the same each time, and read.

buildah writes the layout as a folder; its own oci-archive writer stamps the tar with
the current time, so the archive is packed here instead, in a fixed order with fixed
owners and times. Reading gives the manifest, the config and the sizes that the stage
prints and the tests check.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import VerifyError

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


@dataclass(frozen=True, kw_only=True)
class Blob:
    digest: str  # sha256:<hex>
    size: int
    media_type: str


@dataclass(frozen=True, kw_only=True)
class OciImage:
    manifest_digest: str
    manifest: dict[str, Any]
    config: dict[str, Any]
    layers: tuple[Blob, ...]
    compressed_size: int  # manifest, config and layers as stored: what a pull transfers
    uncompressed_size: int  # the layers' tar streams: what the image takes once unpacked


def pack_layout(folder: Path, archive: Path, mtime: int) -> None:
    """Write the OCI layout in folder as an uncompressed tar at archive."""
    paths = sorted(folder.rglob("*"))
    with tarfile.open(archive, "w", format=tarfile.USTAR_FORMAT) as out:
        for path in paths:
            info = out.gettarinfo(path, arcname=path.relative_to(folder).as_posix())
            info.mtime = mtime
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = 0o755 if info.isdir() else 0o644
            if info.isdir():
                out.addfile(info)
            else:
                with path.open("rb") as content:
                    out.addfile(info, content)


class _Archive:
    """The members of an oci-archive, read by name."""

    def __init__(self, path: Path, tar: tarfile.TarFile) -> None:
        self.path = path
        self.tar = tar

    def read(self, name: str) -> bytes:
        try:
            member = self.tar.extractfile(name)
        except KeyError:
            member = None
        if member is None:
            raise VerifyError(f"{self.path}: {name} is missing from the OCI layout",
                              tip="rebuild it with `nox -s image -- --arch ARCH`")  # fmt: skip
        return member.read()

    def blob(self, blob: Blob) -> bytes:
        algorithm, _, hexdigest = blob.digest.partition(":")
        data = self.read(f"blobs/{algorithm}/{hexdigest}")
        if algorithm != "sha256" or hashlib.sha256(data).hexdigest() != hexdigest:
            raise VerifyError(f"{self.path}: blob {blob.digest} does not match its digest",
                              tip="rebuild it with `nox -s image -- --arch ARCH`")  # fmt: skip
        return data

    def json(self, blob: Blob) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.blob(blob))
        return value


def _blob(descriptor: dict[str, Any]) -> Blob:
    return Blob(digest=descriptor["digest"], size=descriptor["size"],
                media_type=descriptor["mediaType"])  # fmt: skip


def read_image(path: Path) -> OciImage:
    """The single image of an oci-archive, every blob checked against its digest."""
    with tarfile.open(path, "r:") as tar:
        archive = _Archive(path, tar)
        index = json.loads(archive.read("index.json"))
        manifests = [_blob(d) for d in index.get("manifests", [])]
        if len(manifests) != 1 or manifests[0].media_type != MANIFEST_TYPE:
            raise VerifyError(f"{path}: index.json: expected one image manifest, found "
                              f"{[m.media_type for m in manifests]}",
                              tip="pass a single-architecture image archive")  # fmt: skip
        manifest = archive.json(manifests[0])
        config_blob = _blob(manifest["config"])
        layers = tuple(_blob(d) for d in manifest["layers"])
        unpacked = sum(len(_layer_tar(archive.blob(layer), layer)) for layer in layers)
        return OciImage(
            manifest_digest=manifests[0].digest,
            manifest=manifest,
            config=archive.json(config_blob),
            layers=layers,
            compressed_size=manifests[0].size + config_blob.size + sum(b.size for b in layers),
            uncompressed_size=unpacked,
        )


def _layer_tar(data: bytes, layer: Blob) -> bytes:
    return gzip.decompress(data) if layer.media_type.endswith("+gzip") else data


def layer_files(path: Path) -> Iterator[tuple[Blob, tarfile.TarInfo, bytes]]:
    """Every entry of every layer of the image at path, with a regular file's content."""
    image = read_image(path)
    with tarfile.open(path, "r:") as tar:
        archive = _Archive(path, tar)
        for layer in image.layers:
            data = _layer_tar(archive.blob(layer), layer)
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as stream:
                for member in stream:
                    content = stream.extractfile(member) if member.isreg() else None
                    yield layer, member, content.read() if content else b""

"""OCI image layouts: packed into an oci-archive byte for byte the same each time, and read.

buildah writes the layout as a folder; its own oci-archive writer stamps the tar with
the current time, so the archive is packed here instead, in a fixed order with fixed
owners and times. Reading gives the manifest, the config and the sizes that the stage
prints and the tests check.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import tarfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import VerifyError

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"


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
    files = {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }
    _write_layout_tar(files, archive, mtime)


def _write_layout_tar(files: dict[str, bytes], archive: Path, mtime: int) -> None:
    """A tar of the files and the folders above them, sorted, with fixed times and owners."""
    folders = {parent.as_posix() for name in files for parent in Path(name).parents}
    folders.discard(".")
    entries: dict[str, bytes | None] = {**dict.fromkeys(folders), **files}
    with tarfile.open(archive, "w", format=tarfile.USTAR_FORMAT) as out:
        for name in sorted(entries):
            data = entries[name]
            info = tarfile.TarInfo(name)
            info.mtime = mtime
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                out.addfile(info)
            else:
                info.mode, info.size = 0o644, len(data)
                out.addfile(info, io.BytesIO(data))


def pack_index(images: Sequence[Path], archive: Path, ref: str, mtime: int) -> str:
    """One oci-archive holding the images of several single-image archives, under an
    image index whose entries carry each image's platform; returns the index's digest."""
    files: dict[str, bytes] = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}'}
    descriptors = []
    for path in images:
        image = read_image(path)
        with _readable(path), tarfile.open(path, "r:") as tar:
            source = _Archive(path, tar)
            manifest_blob = _single_manifest(source)
            config_blob = _blob(image.manifest["config"])
            for blob in (manifest_blob, config_blob, *image.layers):
                files[f"blobs/sha256/{blob.digest.removeprefix('sha256:')}"] = source.blob(blob)
        platform = {"architecture": image.config["architecture"], "os": image.config["os"]}
        if variant := image.config.get("variant"):
            platform["variant"] = variant
        descriptors.append({"mediaType": MANIFEST_TYPE, "digest": manifest_blob.digest,
                            "size": manifest_blob.size, "platform": platform})  # fmt: skip
    index = _canonical({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": descriptors})
    index_digest = f"sha256:{hashlib.sha256(index).hexdigest()}"
    files[f"blobs/sha256/{index_digest.removeprefix('sha256:')}"] = index
    # The layout's own index.json names the image index, so that `podman load` and
    # `skopeo copy --all oci-archive:...` find every platform through one reference.
    top = {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [{
        "mediaType": INDEX_TYPE, "digest": index_digest, "size": len(index),
        "annotations": {"org.opencontainers.image.ref.name": ref},
    }]}  # fmt: skip
    files["index.json"] = _canonical(top)
    _write_layout_tar(files, archive, mtime)
    return index_digest


def _canonical(value: dict[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


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


@contextlib.contextmanager
def _readable(path: Path) -> Iterator[None]:
    """A cut or foreign archive is reported as this file's fault, not as a traceback."""
    try:
        yield
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, ValueError, KeyError,
            TypeError) as err:  # fmt: skip
        raise VerifyError(f"{path}: not a readable oci-archive: {type(err).__name__}: {err}",
                          tip="rebuild it with `nox -s image -- --arch ARCH`") from err  # fmt: skip


def read_image(path: Path) -> OciImage:
    """The single image of an oci-archive, every blob checked against its digest."""
    with _readable(path), tarfile.open(path, "r:") as tar:
        archive = _Archive(path, tar)
        top = _single_manifest(archive)
        manifest = archive.json(top)
        config_blob = _blob(manifest["config"])
        layers = tuple(_blob(d) for d in manifest["layers"])
        unpacked = sum(len(_layer_tar(archive.blob(layer), layer)) for layer in layers)
        return OciImage(
            manifest_digest=top.digest,
            manifest=manifest,
            config=archive.json(config_blob),
            layers=layers,
            compressed_size=top.size + config_blob.size + sum(b.size for b in layers),
            uncompressed_size=unpacked,
        )


def _single_manifest(archive: _Archive) -> Blob:
    index = json.loads(archive.read("index.json"))
    manifests = [_blob(d) for d in index.get("manifests", [])]
    if len(manifests) != 1 or manifests[0].media_type != MANIFEST_TYPE:
        raise VerifyError(f"{archive.path}: index.json: expected one image manifest, found "
                          f"{[m.media_type for m in manifests]}",
                          tip="pass a single-architecture image archive")  # fmt: skip
    return manifests[0]


def _layer_tar(data: bytes, layer: Blob) -> bytes:
    return gzip.decompress(data) if layer.media_type.endswith("+gzip") else data


def layer_files(path: Path) -> Iterator[tuple[Blob, tarfile.TarInfo, bytes]]:
    """Every entry of every layer of the image at path, with a regular file's content."""
    image = read_image(path)
    with _readable(path), tarfile.open(path, "r:") as tar:
        archive = _Archive(path, tar)
        for layer in image.layers:
            data = _layer_tar(archive.blob(layer), layer)
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as stream:
                for member in stream:
                    content = stream.extractfile(member) if member.isreg() else None
                    yield layer, member, content.read() if content else b""

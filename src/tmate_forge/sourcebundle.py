"""The corresponding-source bundle of a release: every source, patch, recipe and script.

libssh is LGPL and linked statically, so a release ships with what rebuilds it: the
pinned source archives as they were verified, each git source as a `git archive` of its
pinned commit, our patches and recipes, and the build scripts of this project. The
bundle is a gzipped tar with fixed times and owners, the same bytes for the same inputs.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import log
from .atomic import replacing
from .cmd import capture_bytes
from .digest import file_sha256, sha256_bytes
from .errors import VerifyError
from .recipe import ArchiveSource, GitSource
from .sources import FetchedSource

# The project's own files that build the release, relative to the checkout.
BUILD_FILES = ("README.md", "pyproject.toml", "noxfile.py", "src", "launcher", "packaging",
               "patches", "recipes", "scripts")  # fmt: skip
_SKIPPED_PARTS = ("__pycache__", ".egg-info")


@dataclass(frozen=True, kw_only=True)
class BundleConfig:
    sources: tuple[FetchedSource, ...]
    root: Path  # the project checkout
    name: str  # the bundle's top folder and file stem: tmate-forge-sources-VERSION
    mtime: int
    dist: Path  # dist/


@dataclass(frozen=True, kw_only=True)
class BundledSource:
    path: str  # inside the bundle, below its top folder: sources/NAME
    sha256: str


@dataclass(frozen=True, kw_only=True)
class BundleResult:
    bundle: Path
    sources: dict[str, BundledSource]  # by component name


def build_bundle(config: BundleConfig) -> BundleResult:
    files: dict[str, tuple[bytes, int]] = {}
    bundled: dict[str, BundledSource] = {}
    for fetched in config.sources:
        name, data = _source_file(fetched)
        files[f"sources/{name}"] = (data, 0o644)
        bundled[fetched.recipe.name] = BundledSource(path=f"sources/{name}",
                                                     sha256=sha256_bytes(data))  # fmt: skip
    for relative, path in _build_files(config.root):
        files[relative] = (path.read_bytes(), 0o755 if path.stat().st_mode & 0o111 else 0o644)
    bundle = config.dist / f"{config.name}.tar.gz"
    _write_bundle(files, config.name, config.mtime, bundle)
    log.info(f"{bundle.name}: {len(bundled)} sources, {len(files) - len(bundled)} build files")
    return BundleResult(bundle=bundle, sources=bundled)


def _source_file(fetched: FetchedSource) -> tuple[str, bytes]:
    source = fetched.recipe.source
    if isinstance(source, ArchiveSource):
        data = fetched.path.read_bytes()
        if sha256_bytes(data) != source.sha256:
            raise VerifyError(f"{fetched.path}: the cached archive of {fetched.recipe.name} no "
                              f"longer has the SHA-256 of {fetched.recipe.path}",
                              tip="delete it from the cache and run the release again")  # fmt: skip
        return source.file, data
    assert isinstance(source, GitSource)
    stem = f"{fetched.recipe.name}-{source.commit[:12]}"
    data = capture_bytes(["git", "-C", str(fetched.path), "archive", "--format=tar",
                          f"--prefix={stem}/", source.commit])  # fmt: skip
    return f"{stem}.tar", data


def _build_files(root: Path) -> Iterator[tuple[str, Path]]:
    for name in BUILD_FILES:
        top = root / name
        paths = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for path in paths:
            relative = path.relative_to(root)
            if not any(part.endswith(_SKIPPED_PARTS) for part in relative.parts):
                yield relative.as_posix(), path


def _write_bundle(files: dict[str, tuple[bytes, int]], top: str, mtime: int, bundle: Path) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            data, mode = files[name]
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mtime, info.mode = len(data), mtime, mode
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    with (
        replacing(bundle) as partial,
        partial.open("wb") as out,
        gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as zipped,
    ):
        zipped.write(raw.getvalue())
    log.info(f"{bundle}: {log.human_size(bundle.stat().st_size)}, sha256 {file_sha256(bundle)}")

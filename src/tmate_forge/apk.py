"""Stage `apk`: the static build as a signed Alpine package, and a signed index beside it.

The payload is the server and its launcher, an OpenRC service that starts the launcher,
its conf.d, and the licence text of every component linked into the binary. The
package and index are written beside their final names and renamed into place.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from . import log
from .apkindex import IndexedPackage, build_index
from .apkv2 import Entry, PackageInfo, SigningKey, build_package, installed_size
from .arch import Arch
from .atomic import write_atomically
from .compile import PRODUCT, CompileResult
from .errors import BuildError
from .launcher import LAUNCHER
from .patch import PatchedTree
from .signing import public_pem

SERVICE = "tmate-ssh-server"


@dataclass(frozen=True, kw_only=True)
class ApkConfig:
    arch: Arch
    compiled: CompileResult
    trees: tuple[PatchedTree, ...]  # every component, for its licence texts
    pkgver: str  # with the release: 2.3.0_git20230602-r0
    builddate: int
    packager: str
    key: SigningKey
    packaging: Path  # the project's packaging/ folder
    dist: Path  # dist/ARCH
    keys: Path  # dist/keys


@dataclass(frozen=True, kw_only=True)
class ApkResult:
    package: Path
    index: Path
    public_key: Path


def build_apk(config: ApkConfig) -> ApkResult:
    info = _package_info(config)
    entries = payload(config)
    package_bytes = build_package(info, entries, config.key)
    indexed = IndexedPackage(info=info, package=package_bytes,
                             installed_size=installed_size(entries))  # fmt: skip
    index_bytes = build_index([indexed], config.key, config.builddate)

    package = config.dist / f"{PRODUCT}-{config.pkgver}.apk"
    index = config.dist / "APKINDEX.tar.gz"
    public_key = config.keys / config.key.name
    _write_atomically(public_key, public_pem(config.key.private))
    _write_atomically(package, package_bytes)
    _write_atomically(index, index_bytes)
    return ApkResult(package=package, index=index, public_key=public_key)


def _package_info(config: ApkConfig) -> PackageInfo:
    product = next(tree.recipe for tree in config.trees if tree.recipe.name == PRODUCT)
    return PackageInfo(
        pkgname=PRODUCT,
        pkgver=config.pkgver,
        pkgdesc="tmate server: share terminals over SSH (static musl build)",
        url=product.homepage,
        arch=config.arch,
        license=combined_licence(tree.recipe.license for tree in config.trees),
        origin=PRODUCT,
        builddate=config.builddate,
        packager=config.packager,
    )


def combined_licence(licences: Iterable[str]) -> str:
    """One SPDX expression for a static binary: every component's terms apply."""
    unique = dict.fromkeys(licences)
    return " AND ".join(f"({text})" if " OR " in text else text for text in unique)


def payload(config: ApkConfig) -> list[Entry]:
    """The files of the package, with the folders that hold them."""
    openrc = config.packaging / "openrc"
    files = [
        _file("usr/bin/tmate-ssh-server", config.compiled.binary, 0o755),
        _file(f"usr/bin/{LAUNCHER}", config.compiled.launcher, 0o755),
        _file(f"etc/init.d/{SERVICE}", openrc / f"{SERVICE}.initd", 0o755),
        _file(f"etc/conf.d/{SERVICE}", openrc / f"{SERVICE}.confd", 0o644),
    ]
    for tree in config.trees:
        for name in tree.recipe.license_files:
            target = f"usr/share/licenses/{tree.recipe.name}/{name}"
            files.append(_file(target, tree.path / name, 0o644))
    folders = {str(parent) for entry in files for parent in Path(entry.path).parents}
    folders.discard(".")
    return [Entry(path=folder, mode=0o755, directory=True) for folder in sorted(folders)] + files


def _file(target: str, source: Path, mode: int) -> Entry:
    if not source.is_file():
        raise BuildError(
            f"{source}: missing; it is needed for {target} in the package",
            tip="run `nox -s compile -- --arch ARCH` first, or check the recipe's license_files",
        )
    return Entry(path=target, mode=mode, data=source.read_bytes())


def _write_atomically(path: Path, data: bytes) -> None:
    write_atomically(path, data)
    log.info(f"{path}: {log.human_size(len(data))}")

"""The stages in order. Each entry point runs the stages before it, which are cheap
when their stamps are current, so any stage can be asked for on a fresh checkout."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from . import log
from .apk import ApkConfig, ApkResult, build_apk, combined_licence
from .apkv2 import SigningKey
from .arch import Arch
from .cmd import require_tool
from .compile import PRODUCT, CompileConfig, CompileResult, compile_all
from .digest import file_sha256
from .errors import UsageError, did_you_mean
from .image import ImageConfig, ImageResult, build_image, run_line
from .layout import Layout
from .lock import exclusive
from .patch import PatchConfig, PatchedTree, check_patch_folders, patch_sources
from .pkgver import snapshot_pkgver
from .recipe import GitSource, Recipe, build_order, load_recipes
from .signing import load_signing_key
from .sources import FetchedSource, SourcesConfig, commit_time, fetch_sources
from .toolchain import prepare_toolchain


def run_sources(layout: Layout, target: str = PRODUCT) -> list[FetchedSource]:
    """Fetch the sources of target and of everything it depends on."""
    recipes = load_recipes(layout.recipes)
    if target not in recipes:
        hint = did_you_mean(target, recipes)
        raise UsageError(
            f"--component: no recipe named {target!r}{hint} (known: {', '.join(sorted(recipes))})",
            tip="name a file of recipes/ without its .toml",
        )
    order = build_order(recipes, target)
    config = SourcesConfig(recipes=tuple(order), cache=layout.cache, mirrors=layout.mirrors)
    with log.step(f"sources ({len(order)} components)"):
        return fetch_sources(config)


def run_patch(layout: Layout, arch: Arch, target: str = PRODUCT) -> list[PatchedTree]:
    with exclusive(layout.build(arch)):
        return _patch(layout, arch, target)[1]


def _patch(
    layout: Layout, arch: Arch, target: str
) -> tuple[list[FetchedSource], list[PatchedTree]]:
    check_patch_folders(layout.patches, load_recipes(layout.recipes).keys())
    fetched = run_sources(layout, target)
    config = PatchConfig(
        arch=arch, sources=tuple(fetched), patches=layout.patches, build=layout.build(arch)
    )
    with log.step(f"patch [{arch}]"):
        return fetched, patch_sources(config)


def run_compile(layout: Layout, arch: Arch, target: str = PRODUCT) -> CompileResult | None:
    """Build target and its dependencies; for the product, publish it into dist/ARCH.

    Any other target only installs into the per-arch prefix (and returns None): that is
    how the dependencies are built and tested on their own.
    """
    with exclusive(layout.build(arch)):
        return _compile(layout, arch, target)


def _compile(layout: Layout, arch: Arch, target: str) -> CompileResult | None:
    return _compile_trees(layout, arch, _patch(layout, arch, target)[1], target)


def _compile_trees(
    layout: Layout, arch: Arch, trees: list[PatchedTree], target: str
) -> CompileResult | None:
    with log.step(f"toolchain [{arch}]"):
        toolchain = prepare_toolchain(arch, layout.build(arch), layout.cache)
    config = CompileConfig(
        arch=arch,
        trees=tuple(trees),
        toolchain=toolchain,
        root=layout.root,
        build=layout.build(arch),
        dist=layout.dist(arch),
        jobs=os.cpu_count() or 1,
    )
    with log.step(f"compile {target} [{arch}]"):
        result = compile_all(config, publish=target == PRODUCT)
    if result is None:
        return None
    summarize([result.binary, result.debug, result.launcher, result.launcher_debug,
               result.manifest])  # fmt: skip
    return result


def run_apk(layout: Layout, arch: Arch) -> ApkResult:
    """Build (or reuse) the static binaries, then package them as a signed APK and index."""
    settings = _package_settings()
    with exclusive(layout.build(arch)):
        result = _apk(layout, arch, settings, _build_product(layout, arch, settings))
    summarize([result.package, result.index, result.public_key])
    return result


@dataclass(frozen=True, kw_only=True)
class _PackageSettings:
    key: SigningKey
    packager: str
    epoch: int | None  # SOURCE_DATE_EPOCH, when it is set


def _package_settings() -> _PackageSettings:
    # Settings and the key first: a bad one should not wait for a five-minute build.
    key = load_signing_key()
    packager = _text_setting("TMATE_FORGE_PACKAGER", "tmate-forge")
    epoch = _text_setting("SOURCE_DATE_EPOCH", "")
    if epoch and not epoch.isdigit():
        raise UsageError(f"SOURCE_DATE_EPOCH={epoch!r}: expected whole seconds since 1970",
                         tip="unset it, or set it to e.g. $(git log -1 --format=%ct)")  # fmt: skip
    return _PackageSettings(key=key, packager=packager, epoch=int(epoch) if epoch else None)


@dataclass(frozen=True, kw_only=True)
class _Product:
    """The published build of tmate-ssh-server, with what packaging needs to know of it."""

    compiled: CompileResult
    trees: tuple[PatchedTree, ...]  # every component, for licences
    recipe: Recipe  # tmate-ssh-server's
    pkgver: str  # 2.3.0_git20230602-r0
    created: int  # SOURCE_DATE_EPOCH, or else the pinned commit's time


def _build_product(layout: Layout, arch: Arch, settings: _PackageSettings) -> _Product:
    fetched, trees = _patch(layout, arch, PRODUCT)
    compiled = _compile_trees(layout, arch, trees, PRODUCT)
    assert compiled is not None
    source = next(f for f in fetched if f.recipe.name == PRODUCT)
    committed = commit_time(source)
    pkgver = snapshot_pkgver(source.recipe.version, _utc_date(committed), 0,
                             where=str(source.recipe.path))  # fmt: skip
    return _Product(
        compiled=compiled,
        trees=tuple(trees),
        recipe=source.recipe,
        pkgver=pkgver,
        created=settings.epoch if settings.epoch is not None else committed,
    )


def _apk(layout: Layout, arch: Arch, settings: _PackageSettings, product: _Product) -> ApkResult:
    config = ApkConfig(
        arch=arch,
        compiled=product.compiled,
        trees=product.trees,
        pkgver=product.pkgver,
        builddate=product.created,
        packager=settings.packager,
        key=settings.key,
        packaging=layout.root / "packaging",
        dist=layout.dist(arch),
        keys=layout.root / "dist" / "keys",
    )
    with log.step(f"apk {config.pkgver} [{arch}]"):
        return build_apk(config)


def _revision(recipe: Recipe) -> str:
    """The commit that was built, or the release version for an archive source."""
    return recipe.source.commit if isinstance(recipe.source, GitSource) else recipe.version


def run_image(layout: Layout, arch: Arch, *, load: bool = True) -> ImageResult:
    """Build (or reuse) the APK, then build the OCI image from its payload."""
    settings = _package_settings()
    require_tool("buildah", "build the OCI image")
    with exclusive(layout.build(arch)):
        product = _build_product(layout, arch, settings)
        package = _apk(layout, arch, settings, product)
        config = ImageConfig(
            arch=arch,
            package=package.package,
            version=product.pkgver,
            revision=_revision(product.recipe),
            source=product.recipe.homepage,
            licenses=combined_licence(tree.recipe.license for tree in product.trees),
            created=product.created,
            work=layout.build(arch),
            dist=layout.dist(arch),
            load=load,
        )
        with log.step(f"image {config.version} [{arch}]"):
            result = build_image(config)
    summarize([result.archive])
    image = result.image
    log.info(f"manifest {image.manifest_digest}")
    log.info(f"size: {log.human_size(image.compressed_size)} compressed "
             f"({image.compressed_size} B), {log.human_size(image.uncompressed_size)} "
             f"unpacked ({image.uncompressed_size} B)")  # fmt: skip
    if result.loaded:
        log.info(f"loaded as {result.name}; run it with:")
        log.info(f"  {run_line(result.name)}")
    return result


def _text_setting(name: str, default: str) -> str:
    """An environment setting that goes into .PKGINFO: one line, no control characters."""
    value = os.environ.get(name, default)
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise UsageError(f"{name}={value!r}: control characters are not allowed",
                         tip=f"set {name} to a single line of text")  # fmt: skip
    return value


def _utc_date(seconds: int) -> date:
    return datetime.fromtimestamp(seconds, tz=UTC).date()


def summarize(paths: list[Path]) -> None:
    """End a run with its artifacts, their sizes and SHA-256 digests."""
    log.info("artifacts:")
    for path in paths:
        size = path.stat().st_size
        log.info(f"  {path}  {log.human_size(size)}  sha256:{file_sha256(path)}")

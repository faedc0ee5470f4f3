"""The stages in order. Each entry point runs the stages before it, which are cheap
when their stamps are current, so any stage can be asked for on a fresh checkout."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from pathlib import Path

from . import log
from .apk import ApkConfig, ApkResult, build_apk
from .arch import Arch
from .compile import PRODUCT, CompileConfig, CompileResult, compile_all
from .digest import file_sha256
from .errors import UsageError, did_you_mean
from .layout import Layout
from .lock import exclusive
from .patch import PatchConfig, PatchedTree, check_patch_folders, patch_sources
from .pkgver import snapshot_pkgver
from .recipe import build_order, load_recipes
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
        return _patch(layout, arch, target)


def _patch(layout: Layout, arch: Arch, target: str) -> list[PatchedTree]:
    check_patch_folders(layout.patches, load_recipes(layout.recipes).keys())
    fetched = run_sources(layout, target)
    config = PatchConfig(
        arch=arch, sources=tuple(fetched), patches=layout.patches, build=layout.build(arch)
    )
    with log.step(f"patch [{arch}]"):
        return patch_sources(config)


def run_compile(layout: Layout, arch: Arch, target: str = PRODUCT) -> CompileResult | None:
    """Build target and its dependencies; for the product, publish it into dist/ARCH.

    Any other target only installs into the per-arch prefix (and returns None): that is
    how the dependencies are built and tested on their own.
    """
    with exclusive(layout.build(arch)):
        return _compile(layout, arch, target)


def _compile(layout: Layout, arch: Arch, target: str) -> CompileResult | None:
    trees = _patch(layout, arch, target)
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
    # Settings and the key first: a bad one should not wait for a five-minute build.
    key = load_signing_key()
    packager = _text_setting("TMATE_FORGE_PACKAGER", "tmate-forge")
    epoch = _text_setting("SOURCE_DATE_EPOCH", "")
    if epoch and not epoch.isdigit():
        raise UsageError(f"SOURCE_DATE_EPOCH={epoch!r}: expected whole seconds since 1970",
                         tip="unset it, or set it to e.g. $(git log -1 --format=%ct)")  # fmt: skip
    with exclusive(layout.build(arch)):
        compiled = _compile(layout, arch, PRODUCT)
        assert compiled is not None
        trees = _patch(layout, arch, PRODUCT)
        product = next(f for f in run_sources(layout, PRODUCT) if f.recipe.name == PRODUCT)
        committed = commit_time(product)
        config = ApkConfig(
            arch=arch,
            compiled=compiled,
            trees=tuple(trees),
            pkgver=snapshot_pkgver(
                product.recipe.version, _utc_date(committed), 0, where=str(product.recipe.path)
            ),
            builddate=int(epoch) if epoch else committed,
            packager=packager,
            key=key,
            packaging=layout.root / "packaging",
            dist=layout.dist(arch),
            keys=layout.root / "dist" / "keys",
        )
        with log.step(f"apk {config.pkgver} [{arch}]"):
            result = build_apk(config)
    summarize([result.package, result.index, result.public_key])
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

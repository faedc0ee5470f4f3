"""The stages in order. Each entry point runs the stages before it, which are cheap
when their stamps are current, so any stage can be asked for on a fresh checkout."""

from __future__ import annotations

import os
from pathlib import Path

from . import log
from .arch import Arch
from .compile import PRODUCT, CompileConfig, CompileResult, compile_all
from .digest import file_sha256
from .errors import UsageError, did_you_mean
from .layout import Layout
from .lock import exclusive
from .patch import PatchConfig, PatchedTree, check_patch_folders, patch_sources
from .recipe import build_order, load_recipes
from .sources import FetchedSource, SourcesConfig, fetch_sources
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


def summarize(paths: list[Path]) -> None:
    """End a run with its artifacts, their sizes and SHA-256 digests."""
    log.info("artifacts:")
    for path in paths:
        size = path.stat().st_size
        log.info(f"  {path}  {log.human_size(size)}  sha256:{file_sha256(path)}")

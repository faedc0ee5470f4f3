"""Stage `compile`: the static dependencies, then tmate-ssh-server, into dist/ARCH.

Each component builds in a fresh copy of its patched tree and installs into one
per-arch prefix. A component is skipped when the digest of its inputs (recipe, patched
tree, toolchain, flags and the digests of its dependencies) matches its stamp, so a
change rebuilds only what depends on it and an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from . import log, stamp
from .arch import Arch
from .builders import BuildContext, build_component
from .debuginfo import split_debug
from .digest import file_sha256, inputs_digest
from .elfcheck import check_static
from .errors import BuildError
from .launcher import LAUNCHER, LauncherConfig, build_launcher, launcher_source
from .patch import PatchedTree
from .recipe import ArchiveSource, GitSource, Recipe
from .toolchain import Toolchain

PRODUCT = "tmate-ssh-server"


@dataclass(frozen=True, kw_only=True)
class CompileConfig:
    arch: Arch
    trees: tuple[PatchedTree, ...]  # in build order, the product last
    toolchain: Toolchain
    root: Path  # the checkout
    build: Path  # build/ARCH
    dist: Path  # dist/ARCH
    jobs: int

    @property
    def cflags(self) -> tuple[str, ...]:
        return tuple(self.toolchain.cflags(root=self.root, build=self.build))

    @property
    def stable_cflags(self) -> tuple[str, ...]:
        """The flags without the path maps: what goes into digests and the manifest.

        The maps name this checkout and the venv zig runs from; each nox session has its
        own venv, and a digest with those paths would rebuild everything between them.
        """
        return tuple(f for f in self.cflags if not f.startswith("-ffile-prefix-map="))


@dataclass(frozen=True, kw_only=True)
class CompileResult:
    binary: Path
    debug: Path
    launcher: Path
    launcher_debug: Path
    manifest: Path
    rebuilt: tuple[str, ...]  # the components built this time; empty when all were current


def compile_all(config: CompileConfig, *, publish: bool = True) -> CompileResult | None:
    """Build every tree in order; with publish, put the product into dist and return it."""
    digests: dict[str, str] = {}
    rebuilt = []
    for tree in config.trees:
        digests[tree.recipe.name] = _component_digest(tree, config, digests)
        if _build_if_changed(tree, config, digests[tree.recipe.name]):
            rebuilt.append(tree.recipe.name)
    launcher = None
    if "libssh" in digests:
        launcher = build_launcher(LauncherConfig(
            source=launcher_source(config.root), toolchain=config.toolchain,
            cflags=config.cflags, stable_cflags=config.stable_cflags, build=config.build,
            libssh_digest=digests["libssh"],
        ))  # fmt: skip
    if not publish:
        return None
    assert launcher is not None, "the product depends on libssh"
    binary, debug = _publish_binary(config, config.build / "prefix" / "bin" / PRODUCT)
    launcher_binary, launcher_debug = _publish_binary(config, launcher)
    manifest = _write_manifest(config, [binary, debug, launcher_binary, launcher_debug])
    return CompileResult(
        binary=binary, debug=debug, launcher=launcher_binary, launcher_debug=launcher_debug,
        manifest=manifest, rebuilt=tuple(rebuilt),
    )  # fmt: skip


def _component_digest(tree: PatchedTree, config: CompileConfig, done: Mapping[str, str]) -> str:
    recipe = tree.recipe
    return inputs_digest([
        recipe.name, file_sha256(recipe.path), tree.digest, config.toolchain.version,
        list(config.stable_cflags), [done[dep] for dep in recipe.depends],
    ])  # fmt: skip


def _build_if_changed(tree: PatchedTree, config: CompileConfig, digest: str) -> bool:
    name = tree.recipe.name
    marker = config.build / "stamps" / f"compile-{name}.json"
    if stamp.is_current(marker, digest):
        log.info(f"{name}: up to date")
        return False
    with log.step(f"compile {name} {tree.recipe.version} [{config.arch}]"):
        stamp.forget(marker)
        work = config.build / "work" / name
        if work.exists():
            shutil.rmtree(work)
        shutil.copytree(tree.path, work / "src", symlinks=True)
        log_file = config.build / "logs" / f"{name}.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log_file.write_text("")
        build_component(BuildContext(
            recipe=tree.recipe, source=work / "src", work=work, prefix=config.build / "prefix",
            toolchain=config.toolchain, cflags=config.cflags,
            jobs=config.jobs, log_file=log_file,
        ))  # fmt: skip
        stamp.record(marker, digest)
    return True


def _publish_binary(config: CompileConfig, linked: Path) -> tuple[Path, Path]:
    """Strip, split off the debug file, check both, and move them into dist atomically."""
    if not linked.is_file():
        raise BuildError(
            f"{linked}: the build finished but did not install {linked.name}",
            tip=f"read the logs in {config.build / 'logs'}",
        )
    config.dist.mkdir(parents=True, exist_ok=True)
    for stale in config.dist.glob(".partial-*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    binary, debug = config.dist / linked.name, config.dist / f"{linked.name}.debug"
    with tempfile.TemporaryDirectory(dir=config.dist, prefix=".partial-") as scratch:
        staged_binary = Path(scratch) / binary.name
        staged_debug = Path(scratch) / debug.name
        split_debug(linked, staged_binary, staged_debug, config.arch)
        check_static(staged_binary, config.arch, symbols_from=linked)
        os.replace(staged_debug, debug)
        os.replace(staged_binary, binary)
    log.info(f"{binary}: {log.human_size(binary.stat().st_size)}, static, stripped")
    return binary, debug


def _source_entry(recipe: Recipe) -> dict[str, str]:
    match recipe.source:
        case ArchiveSource(url=url, sha256=sha256):
            return {"url": url, "sha256": sha256}
        case GitSource(url=url, commit=commit, tree=tree):
            return {"git": url, "commit": commit, "tree": tree}
    raise AssertionError(recipe.source)


def _write_manifest(config: CompileConfig, artifacts: list[Path]) -> Path:
    """Record what went into the binary. No dates or paths, so it is reproducible."""
    manifest = {
        "product": PRODUCT,
        "arch": config.arch,
        "target": config.toolchain.triple,
        "toolchain": {"zig": config.toolchain.version},
        "cflags": list(config.stable_cflags),
        "components": [
            {
                "name": tree.recipe.name,
                "version": tree.recipe.version,
                "license": tree.recipe.license,
                "source": _source_entry(tree.recipe),
                "patches": [{"name": p.name, "sha256": file_sha256(p)} for p in tree.patches],
                "build_options": list(tree.recipe.build.options),
            }
            for tree in config.trees
        ],
        "launcher": {
            "source": f"launcher/{LAUNCHER}.c",
            "sha256": file_sha256(launcher_source(config.root)),
        },
        "artifacts": {
            path.name: {"sha256": file_sha256(path), "size": path.stat().st_size}
            for path in artifacts
        },
    }
    target = config.dist / f"{PRODUCT}.manifest.json"
    partial = target.with_name(target.name + ".partial")
    partial.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(partial, target)
    return target

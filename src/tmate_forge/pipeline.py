"""The stages in order. Each entry point runs the stages before it, which are cheap
when their stamps are current, so any stage can be asked for on a fresh checkout."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from . import log
from .apk import ApkConfig, ApkResult, build_apk, combined_licence
from .arch import ARCHES, Arch
from .cmd import capture, require_tool
from .compile import PRODUCT, CompileConfig, CompileResult, compile_all
from .digest import file_sha256
from .distcheck import Checkout, check_arch_build
from .errors import ForgeError, UsageError, VerifyError, did_you_mean
from .image import ImageConfig, ImageResult, build_image, run_line
from .layout import Layout
from .lock import exclusive
from .patch import PatchConfig, PatchedTree, check_patch_folders, patch_sources
from .pkgver import snapshot_pkgver
from .recipe import GitSource, Recipe, build_order, load_recipes
from .release import SUMS, ArchBuild, ReleaseConfig, ReleaseResult, assemble_release, check_release
from .settings import PackageSettings, package_settings, source_date_epoch
from .sources import FetchedSource, SourcesConfig, commit_time, fetch_sources
from .toolchain import musl_version, prepare_toolchain, zig_binary


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
    settings = package_settings()
    with exclusive(layout.build(arch)):
        result = _apk(layout, arch, settings, _build_product(layout, arch, settings))
    summarize([result.package, result.index, result.public_key])
    return result


@dataclass(frozen=True, kw_only=True)
class _Facts:
    """What packaging needs to know of tmate-ssh-server's pinned source."""

    recipe: Recipe
    pkgver: str  # 2.3.0_git20230602-r0
    created: int  # SOURCE_DATE_EPOCH, or else the pinned commit's time


@dataclass(frozen=True, kw_only=True)
class _Product:
    """The published build of tmate-ssh-server, with the facts of its source."""

    compiled: CompileResult
    trees: tuple[PatchedTree, ...]  # every component, for licences
    facts: _Facts

    @property
    def recipe(self) -> Recipe:
        return self.facts.recipe

    @property
    def pkgver(self) -> str:
        return self.facts.pkgver

    @property
    def created(self) -> int:
        return self.facts.created


def _facts(source: FetchedSource, epoch: int | None) -> _Facts:
    committed = commit_time(source)
    pkgver = snapshot_pkgver(source.recipe.version, _utc_date(committed), 0,
                             where=str(source.recipe.path))  # fmt: skip
    created = epoch if epoch is not None else committed
    return _Facts(recipe=source.recipe, pkgver=pkgver, created=created)


def _product_facts(layout: Layout, epoch: int | None) -> _Facts:
    source = next(f for f in run_sources(layout, PRODUCT) if f.recipe.name == PRODUCT)
    return _facts(source, epoch)


def _build_product(layout: Layout, arch: Arch, settings: PackageSettings) -> _Product:
    fetched, trees = _patch(layout, arch, PRODUCT)
    compiled = _compile_trees(layout, arch, trees, PRODUCT)
    assert compiled is not None
    source = next(f for f in fetched if f.recipe.name == PRODUCT)
    return _Product(compiled=compiled, trees=tuple(trees), facts=_facts(source, settings.epoch))


def _apk(layout: Layout, arch: Arch, settings: PackageSettings, product: _Product) -> ApkResult:
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
    settings = package_settings()
    require_tool("buildah", "build the OCI image")
    with exclusive(layout.build(arch)):
        product = _build_product(layout, arch, settings)
        package = _apk(layout, arch, settings, product)
        result = _image(layout, arch, product, package, load=load)
    summarize([result.archive])
    image = result.image
    log.info(f"manifest {image.manifest_digest}")
    log.info(f"size: {log.human_size(image.compressed_size)} compressed "
             f"({image.compressed_size} B), {log.human_size(image.uncompressed_size)} "
             f"unpacked ({image.uncompressed_size} B)")  # fmt: skip
    if result.loaded:
        log.info(f"loaded as {result.name}; run it with:")
        log.info(f"  {run_line(result.name)}")
        log.info(f"  ({_AFTER_RUN})")
    return result


_AFTER_RUN = (
    "SSH_HOSTNAME: the name your users' clients connect to; then read their client "
    "block with `podman exec tmate tmate-ssh-server-launch --print-config`"
)


def _image(
    layout: Layout, arch: Arch, product: _Product, package: ApkResult, *, load: bool
) -> ImageResult:
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
        return build_image(config)


def run_release(layout: Layout, *, assemble_only: bool = False) -> ReleaseResult | None:
    """Every architecture through the image stage, then the release's own artifacts.

    With assemble_only, the per-architecture artifacts are taken as they are in dist/
    (the release CI builds each architecture in its own job). Either way they are
    checked against each other before anything is summed. A dist/ that holds a
    finished release is left alone: a no-op when SHA256SUMS checks out, else an error.
    """
    dist = layout.root / "dist"
    if (dist / SUMS).is_file():
        _finished_release(dist)
        return None
    if (dist / SUMS).exists() or (dist / SUMS).is_symlink():
        raise UsageError(f"{dist / SUMS}: not a file, so no finished release either",
                         tip="move it, or all of dist/, away")  # fmt: skip
    builds, facts = (_taken_from_dist if assemble_only else _built)(layout)
    checkout = Checkout(recipes=load_recipes(layout.recipes), patches=layout.patches,
                        keys=dist / "keys")  # fmt: skip
    public_key = _one_signer(builds, checkout)
    zig = zig_binary()
    config = ReleaseConfig(
        builds=tuple(builds),
        sources=tuple(run_sources(layout)),
        root=layout.root,
        version=facts.pkgver,
        musl=musl_version(zig),
        zig=capture([str(zig), "version"], echo=False).strip(),
        created=facts.created,
        public_key=public_key,
        dist=dist,
    )
    with log.step(f"release {facts.pkgver}: image index, sources, SBOMs, {SUMS}"):
        result = assemble_release(config)
    summarize([result.index, result.bundle, result.sums])
    log.info(f"image index {result.index_digest}")
    return result


_Builds = tuple[list[ArchBuild], _Facts]  # each architecture's artifacts, and the facts


def _built(layout: Layout) -> _Builds:
    """Each architecture built through the image stage, signed with the user's key."""
    settings = package_settings()
    require_tool("buildah", "build the OCI images")
    builds = []
    for arch in ARCHES:
        with _release_step(layout, arch):
            product = _build_product(layout, arch, settings)
            package = _apk(layout, arch, settings, product)
            image = _image(layout, arch, product, package, load=False)
        compiled = product.compiled
        builds.append(ArchBuild(
            arch=arch, binary=compiled.binary, debug=compiled.debug, launcher=compiled.launcher,
            launcher_debug=compiled.launcher_debug, manifest=compiled.manifest,
            package=package.package, index=package.index, image=image.archive,
        ))  # fmt: skip
    return builds, product.facts


def _taken_from_dist(layout: Layout) -> _Builds:
    """Each architecture as an earlier job left it in dist/ARCH; no private key is needed."""
    facts = _product_facts(layout, source_date_epoch())
    builds = []
    for arch in ARCHES:
        with _release_step(layout, arch):
            builds.append(_built_in_dist(layout, arch, facts.pkgver))
    return builds, facts


def _one_signer(builds: list[ArchBuild], checkout: Checkout) -> Path:
    """The public key in dist/keys that signed every architecture's package, once each
    architecture's files are checked to belong together (in the release CI they come
    from other jobs; here, a last look before anything is summed)."""
    signers = {}
    for build in builds:
        with _prefixed_errors(f"release [{build.arch}]"):
            signers[build.arch] = check_arch_build(build, checkout)
    if len(set(signers.values())) != 1:
        found = ", ".join(f"{arch} by {key.name}" for arch, key in signers.items())
        raise VerifyError(f"release: the packages are signed by different keys: {found}",
                          tip="sign every architecture with the same key")  # fmt: skip
    return signers[builds[0].arch]


@contextlib.contextmanager
def _release_step(layout: Layout, arch: Arch) -> Iterator[None]:
    """One architecture's part of a release: logged, its errors named, its build locked."""
    where = f"release [{arch}]"
    with log.step(where), _prefixed_errors(where), exclusive(layout.build(arch)):
        yield


def _finished_release(dist: Path) -> None:
    problems = check_release(dist)
    if problems:
        raise UsageError(
            f"{dist / SUMS}: dist/ holds a finished release, but {len(problems)} of its "
            f"checks fail: {', '.join(problems[:5])}",
            tip="a release is never overwritten: move dist/ away, then run it again",
        )
    log.info(f"{dist / SUMS}: dist/ holds a finished release and every file checks out; "
             "nothing to do (move dist/ away to make a new one)")  # fmt: skip


@contextlib.contextmanager
def _prefixed_errors(where: str) -> Iterator[None]:
    """Name the architecture in an error from inside a release."""
    try:
        yield
    except ForgeError as err:
        raise type(err)(f"{where}: {err.message}", tip=err.tip) from err


def _built_in_dist(layout: Layout, arch: Arch, pkgver: str) -> ArchBuild:
    """The artifacts of one architecture that an earlier job left in dist/ARCH."""
    build = ArchBuild.in_dist(layout.dist(arch), arch, pkgver)
    missing = [str(p) for p in build.files() if not p.is_file()]
    if missing:
        raise UsageError(f"--assemble-only: missing, or not a file, in dist/{arch}: "
                         f"{', '.join(missing)}",
                         tip=f"run `nox -s image -- --arch {arch}` first, or put that job's "
                         f"dist/{arch} in place")  # fmt: skip
    return build


def _utc_date(seconds: int) -> date:
    return datetime.fromtimestamp(seconds, tz=UTC).date()


def summarize(paths: list[Path]) -> None:
    """End a run with its artifacts, their sizes and SHA-256 digests."""
    log.info("artifacts:")
    for path in paths:
        size = path.stat().st_size
        log.info(f"  {path}  {log.human_size(size)}  sha256:{file_sha256(path)}")

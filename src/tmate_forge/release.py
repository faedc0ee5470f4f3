"""Stage `release`, its last part: the multi-arch image index, the corresponding-source
bundle, an SPDX SBOM per artifact, and dist/SHA256SUMS over all of it, written last.

The per-architecture artifacts come from the earlier stages (or, in the release CI,
from one job per architecture). SHA256SUMS is written only once everything else is in
place, so its presence means a finished release; without it, nothing is half-published.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spdx_tools.spdx.model import PackagePurpose

from . import log
from .apk import combined_licence
from .apkv2 import KEY_NAME
from .arch import ARCHES, Arch
from .atomic import replacing, write_atomically
from .compile import PRODUCT
from .digest import file_sha256
from .launcher import LAUNCHER, LINKED_COMPONENTS
from .ocilayout import pack_index
from .sbom import Artifact, Component, sbom_document, write_sbom
from .sourcebundle import BundleConfig, BundledSource, build_bundle
from .sources import FetchedSource

SUMS = "SHA256SUMS"
MUSL = "musl"


@dataclass(frozen=True, kw_only=True)
class ArchBuild:
    """What the earlier stages wrote to dist/ARCH for one architecture."""

    arch: Arch
    binary: Path
    debug: Path
    launcher: Path
    launcher_debug: Path
    manifest: Path  # the compile manifest: components, versions, sources, patches
    package: Path  # the APK
    index: Path  # its APKINDEX.tar.gz
    image: Path  # the oci-archive

    @classmethod
    def in_dist(cls, folder: Path, arch: Arch, version: str) -> ArchBuild:
        """The names the earlier stages give these files in dist/ARCH."""
        return cls(
            arch=arch,
            binary=folder / PRODUCT,
            debug=folder / f"{PRODUCT}.debug",
            launcher=folder / LAUNCHER,
            launcher_debug=folder / f"{LAUNCHER}.debug",
            manifest=folder / f"{PRODUCT}.manifest.json",
            package=folder / f"{PRODUCT}-{version}.apk",
            index=folder / "APKINDEX.tar.gz",
            image=folder / f"{PRODUCT}-{version}.oci.tar",
        )

    def files(self) -> list[Path]:
        return [self.binary, self.debug, self.launcher, self.launcher_debug, self.manifest,
                self.package, self.index, self.image]  # fmt: skip

    def described(self) -> list[Path]:
        """The files that get an SBOM of their own (see _artifacts)."""
        return [self.binary, self.debug, self.launcher, self.launcher_debug, self.package,
                self.image]  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class ReleaseConfig:
    builds: tuple[ArchBuild, ...]
    sources: tuple[FetchedSource, ...]
    root: Path  # the project checkout: patches, recipes and build scripts
    version: str  # the package version: 2.3.0_git20230602-r0
    musl: str  # the version of zig's musl, linked into every binary
    zig: str  # zig's version
    created: int  # SOURCE_DATE_EPOCH, or the pinned commit's time
    public_key: Path  # dist/keys/NAME.rsa.pub, the key that signed the packages
    dist: Path  # dist/


@dataclass(frozen=True, kw_only=True)
class ReleaseResult:
    sums: Path
    index: Path
    index_digest: str
    bundle: Path
    sboms: tuple[Path, ...]


def assemble_release(config: ReleaseConfig) -> ReleaseResult:
    bundle = build_bundle(BundleConfig(
        sources=config.sources, root=config.root, name=f"{PRODUCT}-{config.version}-sources",
        mtime=config.created, dist=config.dist,
    ))  # fmt: skip
    index = config.dist / f"{PRODUCT}-{config.version}.oci.tar"
    with replacing(index) as partial:
        digest = pack_index([b.image for b in config.builds], partial,
                            f"localhost/{PRODUCT}:{config.version}", config.created)  # fmt: skip
    log.info(f"{index.name}: image index {digest} for {', '.join(b.arch for b in config.builds)}")

    sboms = []
    for build in config.builds:
        components = _components(build.manifest, bundle.sources, config)
        for artifact in _artifacts(build, components):
            sbom = sbom_path(artifact.path)
            write_sbom(sbom_document(artifact, components, bundle.bundle.name, config.created),
                       sbom)  # fmt: skip
            sboms.append(sbom)
    all_components = _components(config.builds[0].manifest, bundle.sources, config)
    index_artifact = Artifact(path=index, purpose=PackagePurpose.CONTAINER,
                              components=tuple(c.name for c in all_components),
                              license=_licence(all_components))  # fmt: skip
    sbom = sbom_path(index)
    write_sbom(sbom_document(index_artifact, all_components, bundle.bundle.name, config.created),
               sbom)  # fmt: skip
    sboms.append(sbom)
    log.info(f"{len(sboms)} SPDX 2.3 SBOMs, validated")

    published = [config.public_key, bundle.bundle, index, *sboms]
    for build in config.builds:
        published += build.files()
    sums = write_sums(config.dist, published)
    return ReleaseResult(sums=sums, index=index, index_digest=digest, bundle=bundle.bundle,
                         sboms=tuple(sboms))  # fmt: skip


def sbom_path(artifact: Path) -> Path:
    return artifact.with_name(f"{artifact.name}.spdx.json")


def release_files(dist: Path, version: str) -> list[Path]:
    """Every file a release of version writes to dist/, but the public key and SHA256SUMS."""
    index = dist / f"{PRODUCT}-{version}.oci.tar"
    files = [index, sbom_path(index), dist / f"{PRODUCT}-{version}-sources.tar.gz"]
    for arch in ARCHES:
        build = ArchBuild.in_dist(dist / arch, arch, version)
        files += build.files()
        files += [sbom_path(p) for p in build.described()]
    return files


def _licence(components: Sequence[Component]) -> str:
    return combined_licence(component.license for component in components)


def _artifacts(build: ArchBuild, components: Sequence[Component]) -> list[Artifact]:
    everything = tuple(c.name for c in components)
    launcher_parts = tuple(c.name for c in components if c.name in (*LINKED_COMPONENTS, MUSL))
    whole = _licence(components)
    launcher = _licence([c for c in components if c.name in launcher_parts])
    app, archive = PackagePurpose.APPLICATION, PackagePurpose.INSTALL
    return [
        Artifact(path=build.binary, purpose=app, components=everything, license=whole),
        Artifact(path=build.debug, purpose=PackagePurpose.FILE, components=everything,
                 license=whole),
        Artifact(path=build.launcher, purpose=app, components=launcher_parts, license=launcher),
        Artifact(path=build.launcher_debug, purpose=PackagePurpose.FILE,
                 components=launcher_parts, license=launcher),
        Artifact(path=build.package, purpose=archive, components=everything, license=whole),
        Artifact(path=build.image, purpose=PackagePurpose.CONTAINER, components=everything,
                 license=whole),
    ]  # fmt: skip


def _components(
    manifest_path: Path, bundled: dict[str, BundledSource], config: ReleaseConfig
) -> list[Component]:
    """The components the compile manifest records, plus the musl that zig links in."""
    manifest: dict[str, Any] = json.loads(manifest_path.read_text())
    components = []
    for entry in manifest["components"]:
        source = entry["source"]
        download = (f"git+{source['git']}@{source['commit']}" if "git" in source
                    else source["url"])  # fmt: skip
        patches = tuple(_patch_file(config.root, entry["name"], p) for p in entry["patches"])
        components.append(Component(
            name=entry["name"], version=entry["version"], license=entry["license"],
            download=download, source=bundled[entry["name"]], patches=patches,
        ))  # fmt: skip
    components.append(Component(
        name=MUSL, version=config.musl, license="MIT", download=None, source=None, patches=(),
        comment=f"the libc of the toolchain: zig {config.zig} (PyPI package ziglang) builds it "
        "from the musl sources it carries in lib/libc/musl",
    ))  # fmt: skip
    return components


def _patch_file(root: Path, component: str, entry: dict[str, str]) -> Path:
    """A patch the manifest records; distcheck has compared its digest with the file."""
    return root / "patches" / component / entry["name"]


def write_sums(dist: Path, paths: Sequence[Path]) -> Path:
    """dist/SHA256SUMS in the format `sha256sum -c` reads, paths relative to dist/."""
    names = sorted({p.relative_to(dist).as_posix() for p in paths})
    lines = [f"{file_sha256(dist / name)}  {name}\n" for name in names]
    sums = dist / SUMS
    write_atomically(sums, "".join(lines).encode())
    log.info(f"{sums}: {len(lines)} files")
    return sums


def check_release(dist: Path) -> list[str]:
    """What is wrong with the finished release in dist/: [] when SHA256SUMS checks out and
    lists exactly the files the release wrote. Names are checked before files are read."""
    listed, problems = _read_sums(dist)
    return problems or _not_the_release(dist, set(listed)) or _changed(dist, listed)


def _changed(dist: Path, listed: dict[str, str]) -> list[str]:
    """What `sha256sum -c` would report: listed files that are gone or differ."""
    problems = []
    for name, digest in listed.items():
        if not (dist / name).is_file():
            problems.append(f"{name}: missing")
        elif file_sha256(dist / name) != digest:
            problems.append(f"{name}: changed")
    return problems


# What write_sums writes: 64 lower-case hex digits, two spaces, a plain relative path.
_SUMS_LINE = re.compile(r"([0-9a-f]{64})  ([!-~]+)")


def _read_sums(dist: Path) -> tuple[dict[str, str], list[str]]:
    """SHA256SUMS as {path: digest}, or the lines that are not what write_sums writes."""
    try:
        text = (dist / SUMS).read_bytes().decode()
    except UnicodeDecodeError:
        return {}, [f"{SUMS}: not UTF-8 text"]
    lines = text.split("\n")  # as sha256sum reads it: \r, \f and the like are not ends
    if lines.pop() != "":
        return {}, [f"{SUMS}: the last line has no newline"]
    listed: dict[str, str] = {}
    problems = []
    for number, line in enumerate(lines, 1):
        match = _SUMS_LINE.fullmatch(line)
        if not match or Path(match[2]).as_posix() != match[2] or ".." in match[2].split("/"):
            problems.append(f"{SUMS} line {number}: not `SHA-256  PATH` inside dist/")
        elif match[2] in listed:
            problems.append(f"{SUMS} line {number}: {match[2]} is listed twice")
        else:
            listed[match[2]] = match[1]
    return listed, problems


def _not_the_release(dist: Path, listed: set[str]) -> list[str]:
    """The release's files that SHA256SUMS does not name, and the names it has besides."""
    bundles = [n for n in listed if "/" not in n and n.endswith("-sources.tar.gz")]
    if len(bundles) != 1:
        return [f"{SUMS}: expected one *-sources.tar.gz, found {len(bundles)}"]
    version = bundles[0].removeprefix(f"{PRODUCT}-").removesuffix("-sources.tar.gz")
    names = {p.relative_to(dist).as_posix() for p in release_files(dist, version)}
    keys = {n for n in listed if n.startswith("keys/") and KEY_NAME.fullmatch(n[5:])}
    problems = [f"{name}: not listed in {SUMS}" for name in sorted(names - listed)]
    problems += [f"{name}: listed in {SUMS}, but no file of the release"
                 for name in sorted(listed - names - keys)]  # fmt: skip
    if len(keys) != 1:
        problems.append(f"{SUMS}: expected one keys/*.rsa.pub, found {len(keys)}")
    return problems

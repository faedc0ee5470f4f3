"""Checks that one architecture's files in dist/ARCH belong together, and to this checkout.

`release --assemble-only` takes them as an earlier job left them (in the release CI, a
job per architecture). A cut, stale or foreign file must stop the release there, before
anything is written: each file is checked against the others, the compile manifest
against this checkout's recipes and patches, and the package and its index against the
public key in dist/keys that signed them.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .apkindex import package_checksum
from .apkread import index_text, read_payload, signer
from .arch import Arch
from .digest import file_sha256
from .elfcheck import MACHINES, check_static, inspect
from .errors import VerifyError
from .image import PLATFORMS
from .ocilayout import layer_files, read_image
from .recipe import GitSource, Recipe
from .release import ArchBuild

_INSTALLED = "usr/bin/"  # where the package and the image hold both programs


@dataclass(frozen=True, kw_only=True)
class Checkout:
    """What the artifacts must have been built from."""

    recipes: Mapping[str, Recipe]
    patches: Path  # patches/, a folder per component
    keys: Path  # dist/keys: the public keys that may have signed the packages


def check_arch_build(build: ArchBuild, checkout: Checkout) -> Path:
    """Raise VerifyError unless the files of build agree with each other and with the
    checkout; return the public key that signed the package and the index."""
    _check_manifest(build, checkout)
    for elf in (build.binary, build.debug, build.launcher, build.launcher_debug):
        if (machine := inspect(elf).machine) != MACHINES[build.arch]:
            raise VerifyError(f"{elf}: machine: expected {MACHINES[build.arch]}, found "
                              f"{machine}", tip=_tip(build.arch))  # fmt: skip
    for program in (build.binary, build.launcher):
        check_static(program, build.arch)
    programs = {_INSTALLED + p.name: p.read_bytes() for p in (build.binary, build.launcher)}

    payload = {entry.path: entry.data for entry in read_payload(build.package)}
    _same_programs(build.package, programs, payload)
    key = signer(build.package, checkout.keys)
    if signer(build.index, checkout.keys, index=True) != key:
        raise VerifyError(f"{build.index}: signed by another key than {build.package.name}",
                          tip=_tip(build.arch))  # fmt: skip
    _index_names_package(build)

    _check_image(build, programs)
    return key


def _tip(arch: Arch) -> str:
    return f"take dist/{arch} whole from one `nox -s image -- --arch {arch}` run"


def _check_manifest(build: ArchBuild, checkout: Checkout) -> None:
    try:
        manifest: dict[str, Any] = json.loads(build.manifest.read_text(encoding="utf-8"))
        recorded = {name: entry["sha256"] for name, entry in manifest["artifacts"].items()}
        arch = manifest["arch"]
        for component in manifest["components"]:
            _check_component(build.manifest, component, checkout)
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise VerifyError(f"{build.manifest}: not a compile manifest: {type(err).__name__}: "
                          f"{err}", tip=_tip(build.arch)) from err  # fmt: skip
    if arch != build.arch:
        raise VerifyError(f"{build.manifest}: arch: expected {build.arch!r}, found {arch!r}",
                          tip=_tip(build.arch))  # fmt: skip
    for path in (build.binary, build.debug, build.launcher, build.launcher_debug):
        actual = file_sha256(path)
        if recorded.get(path.name) != actual:
            raise VerifyError(
                f"{path}: {build.manifest.name} records SHA-256 {recorded.get(path.name)}, "
                f"the file has {actual}",
                tip=_tip(build.arch),
            )


def _check_component(manifest: Path, entry: dict[str, Any], checkout: Checkout) -> None:
    """One component the build records, against the recipe and patches that pin it here:
    the SBOMs are written from the manifest, so it must not say what was not built."""
    name = entry["name"]
    recipe = checkout.recipes.get(name)
    if recipe is None:
        raise VerifyError(f"{manifest}: component {name!r}: no recipe of that name here",
                          tip="assemble in a checkout of the commit that built it")  # fmt: skip
    source = recipe.source
    if isinstance(source, GitSource):
        pin = {"git": source.url, "commit": source.commit, "tree": source.tree}
    else:
        pin = {"url": source.url, "sha256": source.sha256}
    patches = sorted((checkout.patches / name).glob("*.patch"))
    pinned: dict[str, object] = {
        "version": recipe.version,
        "license": recipe.license,
        "source": pin,
        "patches": [f"{p.name} {file_sha256(p)}" for p in patches],
    }
    found: dict[str, object] = {
        "version": entry["version"],
        "license": entry["license"],
        "source": entry["source"],
        "patches": [f"{p['name']} {p['sha256']}" for p in entry["patches"]],
    }
    for field, value in pinned.items():
        if found[field] != value:
            raise VerifyError(f"{manifest}: component {name!r}: {field}: {recipe.path} pins "
                              f"{value!r}, the build recorded {found[field]!r}",
                              tip="assemble in a checkout of the commit that built it")  # fmt: skip


def _same_programs(where: Path, programs: dict[str, bytes], found: dict[str, bytes]) -> None:
    for name, data in programs.items():
        if found.get(name) != data:
            raise VerifyError(f"{where}: /{name} is not the {Path(name).name} of this dist/",
                              tip="rebuild it from these binaries with `nox -s image`")  # fmt: skip


def _index_names_package(build: ArchBuild) -> None:
    """The index's C: line is the SHA-1 of the package's control member, as apk checks."""
    expected = f"C:{package_checksum(build.package.read_bytes())}"
    if expected not in index_text(build.index).splitlines():
        raise VerifyError(f"{build.index}: does not list {build.package.name} ({expected})",
                          tip=_tip(build.arch))  # fmt: skip


def _check_image(build: ArchBuild, programs: dict[str, bytes]) -> None:
    image = read_image(build.image)
    architecture, expected = image.config.get("architecture"), PLATFORMS[build.arch][0]
    if architecture != expected:
        raise VerifyError(f"{build.image}: architecture: expected {expected!r}, "
                          f"found {architecture!r}", tip=_tip(build.arch))  # fmt: skip
    # The image stage writes one layer; a second could hide the programs of the first.
    if len(image.layers) != 1:
        raise VerifyError(f"{build.image}: expected the one layer the image stage writes, "
                          f"found {len(image.layers)}", tip=_tip(build.arch))  # fmt: skip
    layer = layer_files(build.image)
    files = {posixpath.normpath(member.name).lstrip("/"): data for _, member, data in layer}
    _same_programs(build.image, programs, files)

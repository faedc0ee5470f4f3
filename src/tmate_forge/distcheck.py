"""Checks that one architecture's files in dist/ARCH belong together.

`release --assemble-only` takes them as an earlier job left them (in the release CI, a
job per architecture). A cut, stale or foreign file must stop the release there, before
it is summed into SHA256SUMS: each file is checked against the others and against the
public key in dist/keys that signed the package and its index.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from .apkindex import control_member
from .apkread import index_text, read_payload, signer
from .arch import Arch
from .digest import file_sha256
from .elfcheck import check_static
from .errors import VerifyError
from .ocilayout import layer_files, read_image
from .release import ArchBuild

_INSTALLED = "usr/bin/"  # where the package and the image hold both programs
_PLATFORMS: dict[Arch, str] = {"x86_64": "amd64", "aarch64": "arm64"}


def check_arch_build(build: ArchBuild, keys: Path) -> Path:
    """Raise VerifyError unless the files of build agree with each other; return the
    public key in keys that signed the package and the index."""
    _check_manifest(build)
    for program in (build.binary, build.launcher):
        check_static(program, build.arch)
    programs = {_INSTALLED + p.name: p.read_bytes() for p in (build.binary, build.launcher)}

    payload = {entry.path: entry.data for entry in read_payload(build.package)}
    _same_programs(build.package, programs, payload)
    key = signer(build.package, keys)
    if signer(build.index, keys, index=True) != key:
        raise VerifyError(f"{build.index}: signed by another key than {build.package.name}",
                          tip=_tip(build.arch))  # fmt: skip
    _index_names_package(build)

    _check_image(build, programs)
    return key


def _tip(arch: Arch) -> str:
    return f"take dist/{arch} whole from one `nox -s image -- --arch {arch}` run"


def _check_manifest(build: ArchBuild) -> None:
    try:
        manifest: dict[str, Any] = json.loads(build.manifest.read_bytes())
        recorded = {name: entry["sha256"] for name, entry in manifest["artifacts"].items()}
        arch = manifest["arch"]
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise VerifyError(f"{build.manifest}: not a compile manifest: {err}",
                          tip=_tip(build.arch)) from err  # fmt: skip
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


def _same_programs(where: Path, programs: dict[str, bytes], found: dict[str, bytes]) -> None:
    for name, data in programs.items():
        if found.get(name) != data:
            raise VerifyError(f"{where}: /{name} is not the {Path(name).name} of this dist/",
                              tip="rebuild it from these binaries with `nox -s image`")  # fmt: skip


def _index_names_package(build: ArchBuild) -> None:
    """The index's C: line is the SHA-1 of the package's control member, as apk checks."""
    digest = hashlib.sha1(control_member(build.package.read_bytes()), usedforsecurity=False)
    expected = f"C:Q1{base64.b64encode(digest.digest()).decode()}"
    if expected not in index_text(build.index).splitlines():
        raise VerifyError(f"{build.index}: does not list {build.package.name} ({expected})",
                          tip=_tip(build.arch))  # fmt: skip


def _check_image(build: ArchBuild, programs: dict[str, bytes]) -> None:
    image = read_image(build.image)
    architecture = image.config.get("architecture")
    if architecture != _PLATFORMS[build.arch]:
        raise VerifyError(f"{build.image}: architecture: expected {_PLATFORMS[build.arch]!r}, "
                          f"found {architecture!r}", tip=_tip(build.arch))  # fmt: skip
    wanted = set(programs)
    files = {m.name: data for _, m, data in layer_files(build.image) if m.name in wanted}
    _same_programs(build.image, programs, files)

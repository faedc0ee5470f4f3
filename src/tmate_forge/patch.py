"""Stage `patch`: unpack each verified source into a per-arch tree and apply our patches.

Patches in patches/NAME/*.patch apply in file-name order with no fuzz. The tree is built
in a scratch folder and renamed into place only when every patch applied and the tree
passed its checks, so a failure leaves the previous tree exactly as it was.
"""

from __future__ import annotations

import re
import shutil
import tarfile
import tempfile
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import assert_never

from . import log, stamp
from .arch import Arch
from .cmd import capture, require_tool
from .digest import file_sha256, inputs_digest
from .errors import BuildError, PatchError, SourceError, did_you_mean
from .recipe import ArchiveSource, GitSource, Recipe, source_label
from .sources import FetchedSource


@dataclass(frozen=True, kw_only=True)
class PatchConfig:
    arch: Arch
    sources: tuple[FetchedSource, ...]
    patches: Path  # the project's patches/ folder
    build: Path  # build/ARCH


@dataclass(frozen=True, kw_only=True)
class PatchedTree:
    recipe: Recipe
    path: Path
    patches: tuple[Path, ...]
    digest: str  # of the source pin and the patches: what the tree was made from


def patch_sources(config: PatchConfig) -> list[PatchedTree]:
    trees = []
    for fetched in config.sources:
        trees.append(patch_one(fetched, config))
    return trees


def check_patch_folders(patches: Path, recipes: Collection[str]) -> None:
    """Refuse what would be skipped in silence: a folder named for no recipe, a file that
    is not a .patch, or a .patch without a diff in it."""
    if not patches.is_dir():
        return
    for folder in sorted(p for p in patches.iterdir() if p.is_dir()):
        if folder.name not in recipes:
            hint = did_you_mean(folder.name, recipes)
            raise PatchError(
                f"{folder}: no recipe named {folder.name!r}{hint}",
                tip="name each folder of patches/ after the recipe whose source it patches",
            )
        for entry in sorted(folder.iterdir()):
            if entry.suffix != ".patch":
                raise PatchError(
                    f"{entry}: not a .patch file, so it would never be applied",
                    tip="rename it to NNNN-what-it-does.patch, or move it out of patches/",
                )
            if not _DIFF.search(entry.read_text(encoding="utf-8", errors="replace")):
                raise PatchError(
                    f"{entry}: holds no diff (no '--- a/FILE' and '+++ b/FILE' lines)",
                    tip="write the patch with `git diff` or `diff -u`; see patches/README.md",
                )


_DIFF = re.compile(r"^--- \S.*\n\+\+\+ \S", re.MULTILINE)


def patch_one(fetched: FetchedSource, config: PatchConfig) -> PatchedTree:
    recipe = fetched.recipe
    patches = tuple(sorted((config.patches / recipe.name).glob("*.patch")))
    digest = inputs_digest([
        source_label(recipe.source), recipe.forbid,
        [(p.name, file_sha256(p)) for p in patches],
    ])  # fmt: skip
    tree = config.build / "src" / recipe.name
    marker = config.build / "stamps" / f"patch-{recipe.name}.json"
    result = PatchedTree(recipe=recipe, path=tree, patches=patches, digest=digest)
    if tree.is_dir() and stamp.is_current(marker, digest):
        log.info(f"{recipe.name}: patched tree is current ({len(patches)} patches)")
        return result
    with log.step(f"patch {recipe.name} ({len(patches)} patches) [{config.arch}]"):
        stamp.forget(marker)
        tree.parent.mkdir(parents=True, exist_ok=True)
        for stale in tree.parent.glob(f".{recipe.name}-*"):  # left by a killed run
            shutil.rmtree(stale, ignore_errors=True)
        with tempfile.TemporaryDirectory(dir=tree.parent, prefix=f".{recipe.name}-") as scratch:
            fresh = _unpack(fetched, Path(scratch))
            for patch in patches:
                apply_patch(patch, fresh)
            check_forbidden(recipe, fresh)
            if tree.exists():
                shutil.rmtree(tree)
            fresh.replace(tree)
        stamp.record(marker, digest)
    return result


def _unpack(fetched: FetchedSource, scratch: Path) -> Path:
    """Unpack into scratch/tree and return it; an archive's single top folder is dropped."""
    source = fetched.recipe.source
    match source:
        case ArchiveSource():
            archive = fetched.path
        case GitSource():
            archive = scratch / "export.tar"
            capture(["git", "-C", str(fetched.path), "archive", "--format=tar",
                     f"--output={archive}", source.commit])  # fmt: skip
        case _:
            assert_never(source)
    unpacked = scratch / "unpacked"
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(unpacked, filter="data")
    except (tarfile.TarError, EOFError, OSError) as err:
        raise SourceError(
            f"{fetched.recipe.path}: source: {archive.name} matches its pinned digest "
            f"but cannot be unpacked: {err}",
            tip="the recipe pins a broken archive: pin the digest of the complete release",
        ) from err
    entries = list(unpacked.iterdir())
    top = entries[0] if len(entries) == 1 and entries[0].is_dir() else unpacked
    return top.replace(scratch / "tree")


_HUNK_FAILED = re.compile(r"^Hunk #(\d+) FAILED at (\d+)", re.MULTILINE)
_FILE = re.compile(r"^(?:patching|checking) file (.+)$", re.MULTILINE)


def apply_patch(patch: Path, tree: Path) -> None:
    """Apply one patch strictly (-p1, no fuzz), or raise PatchError naming the hunk."""
    require_tool("patch", "apply patches")
    argv = [
        "patch", "-p1", "--fuzz=0", "--forward", "--batch", "--no-backup-if-mismatch",
        "--reject-file=-", "--directory", str(tree), "--input", str(patch.resolve()),
    ]  # fmt: skip
    try:
        capture(argv)
    except BuildError as err:
        raise PatchError(
            f"{patch}: does not apply to the pinned source: {_failure_summary(err.message)}",
            tip="refresh the patch against the pinned source (see patches/README.md)",
        ) from err


def _failure_summary(output: str) -> str:
    """Name the file and the hunk that failed, from patch(1)'s report."""
    hunks = _HUNK_FAILED.findall(output)
    files = _FILE.findall(output)
    if hunks and files:
        number, line = hunks[0]
        return f"hunk #{number} of {files[-1].strip()} FAILED at line {line}"
    if "Reversed (or previously applied)" in output:
        return "it is already applied (reversed patch detected)"
    if "can't find file" in output:
        return "a file it patches does not exist"
    return output.strip().splitlines()[-1] if output.strip() else "patch failed"


def check_forbidden(recipe: Recipe, tree: Path) -> None:
    """Fail when a C file of the patched tree matches one of the recipe's forbid patterns."""
    patterns = [re.compile(p) for p in recipe.forbid]
    if not patterns:
        return
    for path in sorted([*tree.rglob("*.c"), *tree.rglob("*.h")]):
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            for pattern in patterns:
                if pattern.search(line):
                    raise PatchError(
                        f"{recipe.path}: checks.forbid: {pattern.pattern!r} still matches "
                        f"{path.relative_to(tree)}:{number}: {line.strip()}",
                        tip=f"extend the patches in patches/{recipe.name}/ to remove it",
                    )

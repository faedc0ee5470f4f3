"""Stage `sources`: bring every pinned source into a content-addressed cache, verified.

Places are tried in order: the cache, each mirror in TMATE_FORGE_MIRROR, Debian's source
archive (for a recipe that names its Debian package), then the upstream address. Nothing
is unpacked here; a file enters the cache only after its SHA-256 matched the recipe.
"""

from __future__ import annotations

import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import assert_never

from . import log
from .cmd import capture, require_tool
from .digest import file_sha256
from .errors import BuildError, SourceError
from .recipe import ArchiveSource, GitSource, Recipe

_DOWNLOAD_TIMEOUT = 30


@dataclass(frozen=True, kw_only=True)
class SourcesConfig:
    recipes: tuple[Recipe, ...]
    cache: Path
    mirrors: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class FetchedSource:
    recipe: Recipe
    path: Path  # the verified archive, or the bare git repository holding the commit
    origin: str  # where it came from this time ("cache" when it was already there)


class _Miss(Exception):
    """One place did not have the source; the message says why."""


def fetch_sources(config: SourcesConfig) -> list[FetchedSource]:
    """Fetch and verify every recipe's source; raise SourceError for the first missing one."""
    fetched = []
    for recipe in config.recipes:
        with log.step(f"source {recipe.name} {recipe.version}"):
            result = fetch_one(recipe, config)
            log.info(f"{result.origin} -> {result.path}")
            fetched.append(result)
    return fetched


def fetch_one(recipe: Recipe, config: SourcesConfig) -> FetchedSource:
    match recipe.source:
        case ArchiveSource():
            return _fetch_archive(recipe, recipe.source, config)
        case GitSource():
            return _fetch_git(recipe, recipe.source, config)
        case _:
            assert_never(recipe.source)


def archive_cache_path(cache: Path, source: ArchiveSource) -> Path:
    return cache / "sources" / "sha256" / source.sha256 / source.file


def _fetch_archive(recipe: Recipe, source: ArchiveSource, config: SourcesConfig) -> FetchedSource:
    target = archive_cache_path(config.cache, source)
    tried: list[str] = []
    if target.is_file():
        if file_sha256(target) == source.sha256:
            return FetchedSource(recipe=recipe, path=target, origin="cache")
        tried.append(f"cache {target}: digest changed since it was stored; deleted")
        target.unlink()
    for place, getter in _archive_places(source, config.mirrors):
        try:
            with tempfile.TemporaryDirectory(dir=_tmp_dir(config.cache)) as scratch:
                candidate = getter(Path(scratch))
                _check_digest(source, candidate, place)
                target.parent.mkdir(parents=True, exist_ok=True)
                candidate.replace(target)
            return FetchedSource(recipe=recipe, path=target, origin=place)
        except _Miss as miss:
            tried.append(f"{place}: {miss}")
    raise _not_found(recipe, source.file, tried)


def _check_digest(source: ArchiveSource, candidate: Path, place: str) -> None:
    actual = file_sha256(candidate)
    if actual != source.sha256:
        candidate.unlink()
        log.info(
            f"digest mismatch for {source.file} from {place}: "
            f"expected sha256 {source.sha256}, got {actual}; the file was deleted"
        )
        raise _Miss(f"digest mismatch: expected sha256 {source.sha256}, got {actual} (deleted)")


_Place = tuple[str, Callable[[Path], Path]]


def _archive_places(source: ArchiveSource, mirrors: Sequence[str]) -> list[_Place]:
    """Each place an archive may come from, as (description, fetch into a scratch folder)."""
    places: list[_Place] = []
    for mirror in mirrors:
        if _is_url(mirror):
            url = f"{mirror.rstrip('/')}/{source.file}"
            places.append((f"mirror {url}", partial(_download, url, source.file)))
        else:
            places.append((f"mirror {mirror}", partial(_copy_from_folder, mirror, source.file)))
    if source.debian is not None:
        where = f"Debian source package {source.debian.package} ({source.debian.orig})"
        places.append((where, partial(_apt_source, source.debian.package, source.debian.orig)))
    places.append((f"upstream {source.url}", partial(_download, source.url, source.file)))
    return places


def _is_url(text: str) -> bool:
    return text.split("://", 1)[0] in {"http", "https", "file"} and "://" in text


def _copy_from_folder(folder: str, name: str, scratch: Path) -> Path:
    if not Path(folder).is_dir():
        raise _Miss("no such folder")
    found = Path(folder) / name
    if not found.is_file():
        raise _Miss(f"no file {name} in that folder")
    return Path(shutil.copyfile(found, scratch / name))


def _download(url: str, name: str, scratch: Path) -> Path:
    log.info(f"download {url}")
    target = scratch / name
    try:
        with (
            urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT) as response,
            target.open("wb") as sink,
        ):
            shutil.copyfileobj(response, sink)
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise _Miss(f"download failed: {err}") from err
    return target


def _apt_source(package: str, orig: str, scratch: Path) -> Path:
    """Download a Debian source package with apt and keep its orig archive.

    apt checks the files against Debian's signed index; our own digest check follows.
    """
    if shutil.which("apt-get") is None:
        raise _Miss("apt-get is not installed")
    try:
        capture(["apt-get", "source", "--download-only", "--only-source", package], cwd=scratch)
    except BuildError as err:
        # apt may fail on a file it does not need (the Debian packaging) after it already
        # fetched the orig archive, so look for the archive before giving up.
        log.info(f"apt-get source {package} reported an error; looking for {orig} anyway")
        if not (scratch / orig).is_file():
            raise _Miss(f"apt-get source failed: {_last_line(err.message)}") from err
    found = scratch / orig
    if not found.is_file():
        raise _Miss(f"the source package has no file {orig} (a newer Debian version?)")
    return found


def _fetch_git(recipe: Recipe, source: GitSource, config: SourcesConfig) -> FetchedSource:
    """Bring the pinned commit into a bare cache repository that holds nothing unverified.

    Each place is fetched into a scratch repository that replaces the cache entry only
    once it holds the pinned commit and tree, so a failed or damaged fetch never sticks.
    """
    require_tool("git", "fetch git sources")
    target = config.cache / "git" / f"{recipe.name}.git"
    tried: list[str] = []
    if target.exists():
        problem = _repository_problem(recipe, target, source)
        if problem is None:
            return FetchedSource(recipe=recipe, path=target, origin="cache")
        tried.append(f"cache {target}: {problem}; deleted")
        shutil.rmtree(target)
    for place, url in _git_places(recipe.name, source, config.mirrors):
        scratch = Path(tempfile.mkdtemp(dir=_tmp_dir(config.cache), suffix=".git"))
        try:
            _git_fetch_into(scratch, url, source.commit)
            problem = _repository_problem(recipe, scratch, source)
            if problem is None:
                target.parent.mkdir(parents=True, exist_ok=True)
                scratch.replace(target)
                return FetchedSource(recipe=recipe, path=target, origin=place)
            tried.append(f"{place}: {problem}")
        except BuildError as err:
            tried.append(f"{place}: {_last_line(err.message)}")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    raise _not_found(recipe, f"{recipe.name}.git (commit {source.commit})", tried)


def _git_places(name: str, source: GitSource, mirrors: Sequence[str]) -> list[tuple[str, str]]:
    places = []
    for mirror in mirrors:
        if _is_url(mirror):
            url = f"{mirror.rstrip('/')}/{name}.git"
            places.append((f"mirror {url}", url))
            continue
        for candidate in (Path(mirror) / f"{name}.git", Path(mirror) / name):
            if candidate.is_dir():
                places.append((f"mirror {candidate}", str(candidate)))
                break
        else:
            places.append((f"mirror {mirror}", str(Path(mirror) / f"{name}.git")))
    places.append((f"upstream {source.url}", source.url))
    return places


def _git_fetch_into(repo: Path, url: str, commit: str) -> None:
    """Fetch just the pinned commit into a new bare repository, checking every object.

    Asking for one commit keeps the cache small and works on a partial mirror. A local
    repository serves an unadvertised commit only when its upload-pack allows it, hence
    the --upload-pack override (ignored by the http transports, where the big hosts
    allow fetching any reachable commit).
    """
    if "://" not in url and not Path(url).is_dir():
        raise BuildError(f"no repository at {url}")
    capture(["git", "init", "--quiet", "--bare", str(repo)], echo=False)
    capture([
        "git", "-C", str(repo), "-c", "transfer.fsckObjects=true", "fetch", "--quiet",
        "--no-tags", "--upload-pack=git -c uploadpack.allowAnySHA1InWant=true upload-pack",
        url, commit,
    ])  # fmt: skip


def _repository_problem(recipe: Recipe, repo: Path, source: GitSource) -> str | None:
    """None when repo holds the pinned commit, intact; else what is wrong with it.

    The commit id covers its tree and every file below it, and `git fsck` re-checks each
    object against its id, so a repository that passes holds exactly the pinned content.
    The tree check catches a recipe whose two ids disagree.
    """

    def git(*args: str) -> str:
        return capture(["git", "-C", str(repo), *args], echo=False).strip()

    try:
        kind = git("cat-file", "-t", source.commit)
    except BuildError:
        return f"commit {source.commit} is not there"
    if kind != "commit":
        raise SourceError(
            f"{recipe.path}: source.commit: {source.commit} is a {kind}, not a commit",
            tip="pin the commit id (git rev-parse TAG^{commit}), not a tag or tree id",
        )
    try:
        tree = git("rev-parse", f"{source.commit}^{{tree}}")
        git("fsck", "--no-dangling", "--no-progress")
    except BuildError as err:
        return f"damaged ({_last_line(err.message)})"
    if tree != source.tree:
        raise SourceError(
            f"{recipe.path}: source.tree: expected {source.tree}, but commit "
            f"{source.commit} has tree {tree}",
            tip="check source.commit and source.tree in the recipe; one of them is wrong",
        )
    return None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "failed"


def _tmp_dir(cache: Path) -> Path:
    scratch = cache / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    return scratch


def _not_found(recipe: Recipe, what: str, tried: list[str]) -> SourceError:
    places = "\n".join(f"  - {line}" for line in tried)
    return SourceError(
        f"{recipe.path}: source {what} not found in any place tried:\n{places}",
        tip=(
            f"put {what.split(' ')[0]} in a folder and add that folder to TMATE_FORGE_MIRROR "
            "(archives by file name, git repositories as NAME.git or NAME/)"
        ),
    )


def commit_time(fetched: FetchedSource) -> int:
    """The committer time of a git source's pinned commit, in seconds since the epoch."""
    assert isinstance(fetched.recipe.source, GitSource)
    text = capture(["git", "-C", str(fetched.path), "show", "-s", "--format=%ct",
                    fetched.recipe.source.commit], echo=False)  # fmt: skip
    return int(text.strip())

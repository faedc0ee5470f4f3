from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tmate_forge.errors import SourceError
from tmate_forge.recipe import load_recipe
from tmate_forge.sources import SourcesConfig, archive_cache_path, fetch_one

from .conftest import ROOT, RecipeWriter, archive_recipe, make_archive

UNREACHABLE = "http://127.0.0.1:9/nowhere/demo-1.0.tar.gz"  # port 9 (discard): refused at once


def _config(tmp_path: Path, *mirrors: Path | str) -> SourcesConfig:
    return SourcesConfig(recipes=(), cache=tmp_path / "cache", mirrors=tuple(map(str, mirrors)))


@pytest.fixture
def mirror(tmp_path: Path) -> tuple[Path, str]:
    folder = tmp_path / "mirror"
    folder.mkdir()
    _, digest = make_archive(folder, "demo-1.0.tar.gz", {"README": "demo\n"})
    return folder, digest


def test_mirror_folder_then_cache_offline(
    tmp_path: Path, recipe_dir: tuple[Path, RecipeWriter], mirror: tuple[Path, str]
) -> None:
    folder, digest = mirror
    _, write = recipe_dir
    recipe = load_recipe(write("demo", archive_recipe("demo", digest, UNREACHABLE)))

    first = fetch_one(recipe, _config(tmp_path, folder))
    assert first.origin == f"mirror {folder}"
    assert first.path == archive_cache_path(tmp_path / "cache", recipe.source)  # type: ignore[arg-type]

    # Offline: no mirror at all and an unreachable upstream; the cache alone serves it.
    second = fetch_one(recipe, _config(tmp_path))
    assert second.origin == "cache"
    assert second.path.read_bytes() == (folder / "demo-1.0.tar.gz").read_bytes()


def test_url_mirror_is_tried(
    tmp_path: Path, recipe_dir: tuple[Path, RecipeWriter], mirror: tuple[Path, str]
) -> None:
    folder, digest = mirror
    _, write = recipe_dir
    recipe = load_recipe(write("demo", archive_recipe("demo", digest, UNREACHABLE)))
    fetched = fetch_one(recipe, _config(tmp_path, folder.as_uri()))
    assert fetched.origin == f"mirror {folder.as_uri()}/demo-1.0.tar.gz"


@pytest.mark.parametrize("damage", ["wrong-digest", "truncated"])
def test_bad_archive_is_refused_with_both_digests_and_deleted(
    tmp_path: Path, recipe_dir: tuple[Path, RecipeWriter], mirror: tuple[Path, str], damage: str
) -> None:
    folder, digest = mirror
    archive = folder / "demo-1.0.tar.gz"
    if damage == "truncated":
        archive.write_bytes(archive.read_bytes()[:40])
        pinned = digest
    else:
        pinned = "0" * 64
    _, write = recipe_dir
    recipe = load_recipe(write("demo", archive_recipe("demo", pinned, UNREACHABLE)))

    with pytest.raises(SourceError) as caught:
        fetch_one(recipe, _config(tmp_path, folder))
    message = str(caught.value)
    actual = subprocess.run(["sha256sum", str(archive)], capture_output=True, text=True)
    assert f"expected sha256 {pinned}, got {actual.stdout.split()[0]}" in message
    assert not any((tmp_path / "cache" / "sources").rglob("demo-1.0.tar.gz"))
    assert not any((tmp_path / "cache" / "tmp").iterdir())


def test_tampered_cache_entry_is_replaced_from_mirror(
    tmp_path: Path, recipe_dir: tuple[Path, RecipeWriter], mirror: tuple[Path, str]
) -> None:
    folder, digest = mirror
    _, write = recipe_dir
    recipe = load_recipe(write("demo", archive_recipe("demo", digest, UNREACHABLE)))
    cached = fetch_one(recipe, _config(tmp_path, folder)).path
    cached.write_bytes(b"tampered")
    again = fetch_one(recipe, _config(tmp_path, folder))
    assert again.origin == f"mirror {folder}"
    assert again.path.read_bytes() == (folder / "demo-1.0.tar.gz").read_bytes()


def test_missing_everywhere_lists_each_place_and_how_to_supply(
    tmp_path: Path, recipe_dir: tuple[Path, RecipeWriter]
) -> None:
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    _, write = recipe_dir
    recipe = load_recipe(write("demo", archive_recipe("demo", "1" * 64, UNREACHABLE)))
    with pytest.raises(SourceError) as caught:
        fetch_one(recipe, _config(tmp_path, empty, "file:///nonexistent-mirror"))
    message = str(caught.value)
    assert f"mirror {empty}: no file demo-1.0.tar.gz in that folder" in message
    assert "mirror file:///nonexistent-mirror/demo-1.0.tar.gz: download failed" in message
    assert f"upstream {UNREACHABLE}: download failed" in message
    assert "TMATE_FORGE_MIRROR" in message
    assert "demo.toml" in message


def _git(*args: str, cwd: Path) -> str:
    run = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return run.stdout.strip()


@pytest.fixture
def git_mirror(tmp_path: Path) -> tuple[Path, str, str]:
    """A mirror folder with demo.git (bare), one commit; returns folder, commit, tree."""
    work = tmp_path / "work"
    work.mkdir()
    _git("init", "-q", cwd=work)
    (work / "main.c").write_text("int main(void) { return 0; }\n")
    _git("add", ".", cwd=work)
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one", cwd=work)
    folder = tmp_path / "git-mirror"
    folder.mkdir()
    _git("clone", "-q", "--bare", str(work), str(folder / "demo.git"), cwd=tmp_path)
    return folder, _git("rev-parse", "HEAD", cwd=work), _git("rev-parse", "HEAD^{tree}", cwd=work)


def _git_recipe(commit: str, tree: str) -> str:
    return archive_recipe("demo", "0" * 64, "x").replace(
        'url = "x"\nsha256 = "' + "0" * 64 + '"',
        f'git = "http://127.0.0.1:9/demo.git"\ncommit = "{commit}"\ntree = "{tree}"',
    )


def test_git_source_from_mirror_then_cache(
    tmp_path: Path, recipe_dir: tuple[Path, RecipeWriter], git_mirror: tuple[Path, str, str]
) -> None:
    folder, commit, tree = git_mirror
    _, write = recipe_dir
    recipe = load_recipe(write("demo", _git_recipe(commit, tree)))
    assert fetch_one(recipe, _config(tmp_path, folder)).origin == f"mirror {folder / 'demo.git'}"
    assert fetch_one(recipe, _config(tmp_path)).origin == "cache"


def test_git_commit_with_other_tree_is_refused(
    tmp_path: Path, recipe_dir: tuple[Path, RecipeWriter], git_mirror: tuple[Path, str, str]
) -> None:
    folder, commit, _ = git_mirror
    _, write = recipe_dir
    recipe = load_recipe(write("demo", _git_recipe(commit, "f" * 40)))
    pattern = rf"demo\.toml: source\.tree: expected {'f' * 40}, but commit {commit} has tree"
    with pytest.raises(SourceError, match=pattern):
        fetch_one(recipe, _config(tmp_path, folder))


def test_tree_id_given_as_commit_is_refused(
    tmp_path: Path, recipe_dir: tuple[Path, RecipeWriter], git_mirror: tuple[Path, str, str]
) -> None:
    folder, _, tree = git_mirror
    _, write = recipe_dir
    recipe = load_recipe(write("demo", _git_recipe(tree, tree)))
    with pytest.raises(SourceError, match=rf"source\.commit: {tree} is a tree, not a commit"):
        fetch_one(recipe, _config(tmp_path, folder))


@pytest.mark.parametrize("damage", ["empty-repository", "corrupt-object"])
def test_damaged_git_cache_is_fetched_again(
    tmp_path: Path,
    recipe_dir: tuple[Path, RecipeWriter],
    git_mirror: tuple[Path, str, str],
    damage: str,
) -> None:
    folder, commit, tree = git_mirror
    _, write = recipe_dir
    recipe = load_recipe(write("demo", _git_recipe(commit, tree)))
    cached = tmp_path / "cache" / "git" / "demo.git"
    if damage == "empty-repository":
        cached.mkdir(parents=True)
    else:
        fetch_one(recipe, _config(tmp_path, folder))
        blob = _git("rev-parse", f"{commit}:main.c", cwd=cached)
        loose = cached / "objects" / blob[:2] / blob[2:]
        packs = list((cached / "objects" / "pack").glob("*.pack"))
        victim = loose if loose.exists() else packs[0]
        victim.chmod(0o644)
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0xFF
        victim.write_bytes(bytes(data))
    fetched = fetch_one(recipe, _config(tmp_path, folder))
    assert fetched.origin == f"mirror {folder / 'demo.git'}"
    assert _git("cat-file", "-t", commit, cwd=cached) == "commit"


def test_git_commit_missing_from_mirror_lists_places(
    tmp_path: Path, recipe_dir: tuple[Path, RecipeWriter], git_mirror: tuple[Path, str, str]
) -> None:
    folder, _, tree = git_mirror
    _, write = recipe_dir
    recipe = load_recipe(write("demo", _git_recipe("e" * 40, tree)))
    with pytest.raises(SourceError, match="not found in any place tried") as caught:
        fetch_one(recipe, _config(tmp_path, folder))
    assert f"mirror {folder / 'demo.git'}" in str(caught.value)
    assert "upstream http://127.0.0.1:9/demo.git" in str(caught.value)


def _debian_serves(package: str) -> bool:
    if shutil.which("apt-get") is None:
        return False
    probe = subprocess.run(
        ["apt-get", "source", "--print-uris", "--only-source", package],
        capture_output=True, text=True,
    )  # fmt: skip
    return probe.returncode == 0 and ".orig." in probe.stdout


def test_debian_source_archive_serves_a_pinned_release(tmp_path: Path) -> None:
    if not _debian_serves("libevent"):
        pytest.skip("needs apt-get with a deb-src entry for trixie: run scripts/setup-host")
    recipe = load_recipe(ROOT / "recipes" / "libevent.toml")
    fetched = fetch_one(recipe, _config(tmp_path))
    assert fetched.origin.startswith("Debian source package libevent")
    assert fetched.path.name == "libevent-2.1.13-stable.tar.gz"

from __future__ import annotations

from pathlib import Path

import pytest

from tmate_forge.errors import PatchError
from tmate_forge.patch import PatchConfig, check_patch_folders, patch_one
from tmate_forge.recipe import load_recipe, load_recipes
from tmate_forge.sources import FetchedSource

from .conftest import ROOT, RecipeWriter, archive_recipe, make_archive

GOOD = """\
Say hello to musl.

--- a/main.c
+++ b/main.c
@@ -1,4 +1,4 @@
 int main(void)
 {
-	return 1;
+	return 0;
 }
"""

STALE = """\
Written against another version: its context no longer matches.

--- a/main.c
+++ b/main.c
@@ -1,4 +1,4 @@
 int main(int argc, char **argv)
 {
-	return 1;
+	return 2;
 }
"""


@pytest.fixture
def project(tmp_path: Path, recipe_dir: tuple[Path, RecipeWriter]) -> tuple[FetchedSource, Path]:
    """A one-file source archive, its recipe, and an empty patches folder."""
    archive, digest = make_archive(
        tmp_path, "demo-1.0.tar.gz", {"main.c": "int main(void)\n{\n\treturn 1;\n}\n"}
    )
    _, write = recipe_dir
    recipe = load_recipe(
        write("demo", archive_recipe("demo", digest, "https://example.invalid/demo-1.0.tar.gz"))
    )
    patches = tmp_path / "patches"
    (patches / "demo").mkdir(parents=True)
    return FetchedSource(recipe=recipe, path=archive, origin="test"), patches


def _config(tmp_path: Path, patches: Path) -> PatchConfig:
    return PatchConfig(arch="x86_64", sources=(), patches=patches, build=tmp_path / "build")


def test_patches_apply_in_order_and_rerun_is_skipped(
    tmp_path: Path, project: tuple[FetchedSource, Path]
) -> None:
    fetched, patches = project
    (patches / "demo" / "0001-hello.patch").write_text(GOOD)
    tree = patch_one(fetched, _config(tmp_path, patches))
    assert "return 0;" in (tree.path / "main.c").read_text()

    (tree.path / "marker").write_text("kept when nothing changed")
    again = patch_one(fetched, _config(tmp_path, patches))
    assert (again.path / "marker").exists()
    assert again.digest == tree.digest


def test_changed_patch_rebuilds_the_tree(
    tmp_path: Path, project: tuple[FetchedSource, Path]
) -> None:
    fetched, patches = project
    first = patch_one(fetched, _config(tmp_path, patches))
    (first.path / "marker").write_text("gone after a rebuild")
    (patches / "demo" / "0001-hello.patch").write_text(GOOD)
    second = patch_one(fetched, _config(tmp_path, patches))
    assert not (second.path / "marker").exists()
    assert second.digest != first.digest


def test_stale_patch_names_patch_and_hunk_and_keeps_old_tree(
    tmp_path: Path, project: tuple[FetchedSource, Path]
) -> None:
    fetched, patches = project
    (patches / "demo" / "0001-hello.patch").write_text(GOOD)
    good = patch_one(fetched, _config(tmp_path, patches))
    before = (good.path / "main.c").read_text()

    (patches / "demo" / "0002-stale.patch").write_text(STALE)
    with pytest.raises(PatchError, match=r"0002-stale\.patch: does not apply .*hunk #1 of main\.c"):
        patch_one(fetched, _config(tmp_path, patches))
    assert (good.path / "main.c").read_text() == before
    assert [p.name for p in good.path.parent.iterdir()] == ["demo"]


def test_already_applied_patch_is_reported(
    tmp_path: Path, project: tuple[FetchedSource, Path]
) -> None:
    fetched, patches = project
    (patches / "demo" / "0001-hello.patch").write_text(GOOD)
    (patches / "demo" / "0002-again.patch").write_text(GOOD)
    with pytest.raises(PatchError, match=r"0002-again\.patch: .*already applied"):
        patch_one(fetched, _config(tmp_path, patches))


def test_forbidden_pattern_left_in_tree_fails(
    tmp_path: Path, project: tuple[FetchedSource, Path], recipe_dir: tuple[Path, RecipeWriter]
) -> None:
    fetched, patches = project
    _, write = recipe_dir
    text = fetched.recipe.path.read_text() + '\n[checks]\nforbid = ["return 1;"]\n'
    strict = FetchedSource(recipe=load_recipe(write("demo", text)), path=fetched.path, origin="t")
    with pytest.raises(PatchError, match=r"checks\.forbid: 'return 1;' still matches main\.c:3"):
        patch_one(strict, _config(tmp_path, patches))
    (patches / "demo" / "0001-hello.patch").write_text(GOOD)
    assert (
        "return 0;" in (patch_one(strict, _config(tmp_path, patches)).path / "main.c").read_text()
    )


@pytest.mark.parametrize(
    ("entry", "text", "message"),
    [
        pytest.param("mbedtsl/0001-x.patch", GOOD, r"mbedtsl: no recipe named 'mbedtsl'; did you "
                     r"mean 'mbedtls'\?", id="misspelled-folder"),
        pytest.param("mbedtls/0001-x.diff", GOOD, r"0001-x\.diff: not a \.patch file",
                     id="not-a-patch-file"),
        pytest.param("mbedtls/0001-x.patch", "", r"0001-x\.patch: holds no diff", id="empty"),
        pytest.param("mbedtls/0001-x.patch", "Only prose.\n", r"holds no diff", id="no-diff"),
    ],
)  # fmt: skip
def test_patches_that_would_be_skipped_are_refused(
    tmp_path: Path, entry: str, text: str, message: str
) -> None:
    patches = tmp_path / "patches"
    (patches / entry).parent.mkdir(parents=True)
    (patches / entry).write_text(text)
    with pytest.raises(PatchError, match=message):
        check_patch_folders(patches, {"mbedtls", "libssh"})


def test_project_patch_folders_pass() -> None:
    check_patch_folders(ROOT / "patches", load_recipes(ROOT / "recipes").keys())


def test_stale_scratch_folder_of_a_killed_run_is_removed(
    tmp_path: Path, project: tuple[FetchedSource, Path]
) -> None:
    fetched, patches = project
    leftover = tmp_path / "build" / "src" / ".demo-killed"
    leftover.mkdir(parents=True)
    patch_one(fetched, _config(tmp_path, patches))
    assert not leftover.exists()

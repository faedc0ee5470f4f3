from __future__ import annotations

from pathlib import Path

import pytest

from tmate_forge.errors import RecipeError
from tmate_forge.recipe import ArchiveSource, GitSource, build_order, load_recipe, load_recipes

from .conftest import DATA, ROOT, RecipeWriter, archive_recipe


def test_project_recipes_load_and_order_dependencies_first() -> None:
    recipes = load_recipes(ROOT / "recipes")
    order = [r.name for r in build_order(recipes, "tmate-ssh-server")]
    assert order[-1] == "tmate-ssh-server"
    assert order.index("mbedtls") < order.index("libssh")
    assert set(order) == set(recipes)


def test_project_recipes_pin_every_source() -> None:
    for recipe in load_recipes(ROOT / "recipes").values():
        match recipe.source:
            case ArchiveSource(sha256=digest):
                assert len(digest) == 64, recipe.name
            case GitSource(commit=commit, tree=tree):
                assert len(commit) == len(tree) == 40, recipe.name


@pytest.mark.parametrize(
    ("case", "message"),
    [
        pytest.param("unknown-key", r"source\.sha265: unknown key; did you mean 'sha256'\?",
                     id="unknown-key-suggests"),
        pytest.param("wrong-type", r"depends: expected a list of strings, got str 'nothing'",
                     id="wrong-type"),
        pytest.param("missing-field", r"license: missing required field", id="missing-field"),
        pytest.param("bad-digest", r"source\.sha256: expected 64 lower-case hex digits, got "
                     r"'38EF96B8'", id="bad-digest"),
        pytest.param("unknown-dependency", r"depends\[0\]: no recipe named 'libsssh'; did you "
                     r"mean 'libssh'\?", id="unknown-dependency"),
    ],
)  # fmt: skip
def test_malformed_recipe_names_file_and_field(case: str, message: str) -> None:
    with pytest.raises(RecipeError, match=message) as caught:
        load_recipes(DATA / "recipes" / case)
    assert "zlib.toml" in str(caught.value)
    assert caught.value.tip


def test_name_must_match_file(recipe_dir: tuple[Path, RecipeWriter]) -> None:
    _, write = recipe_dir
    path = write("other", archive_recipe("zlib", "0" * 64, "https://example.invalid/z.tar.gz"))
    with pytest.raises(RecipeError, match=r"other\.toml: name: expected the file's stem 'other'"):
        load_recipe(path)


def test_invalid_toml_is_reported_with_file(recipe_dir: tuple[Path, RecipeWriter]) -> None:
    _, write = recipe_dir
    path = write("zlib", "name = \n")
    with pytest.raises(RecipeError, match=r"zlib\.toml: not valid TOML"):
        load_recipe(path)


def test_bad_forbid_pattern_is_rejected(recipe_dir: tuple[Path, RecipeWriter]) -> None:
    _, write = recipe_dir
    text = archive_recipe("zlib", "0" * 64, "https://example.invalid/z.tar.gz")
    path = write("zlib", text + '\n[checks]\nforbid = ["(unclosed"]\n')
    with pytest.raises(RecipeError, match=r"checks\.forbid\[0\]: not a valid regular expression"):
        load_recipe(path)


def test_file_name_defaults_to_url_basename(recipe_dir: tuple[Path, RecipeWriter]) -> None:
    _, write = recipe_dir
    path = write("zlib", archive_recipe("zlib", "a" * 64, "https://example.invalid/d/z-1.tar.gz"))
    source = load_recipe(path).source
    assert isinstance(source, ArchiveSource)
    assert source.file == "z-1.tar.gz"


@pytest.mark.parametrize(
    ("option", "message"),
    [
        pytest.param("--with-x={prefx}", r"unknown placeholder \{prefx\}", id="typo"),
        pytest.param("--with-x={prefix.upper}", r"unknown placeholder \{prefix\.upper\}",
                     id="attribute"),
        pytest.param("--with-x={prefix[0]}", r"unknown placeholder", id="index"),
        pytest.param("--with-x={prefix!r}", r"unknown placeholder \{prefix\}", id="conversion"),
        pytest.param("--with-x={", r"bad braces in '--with-x=\{'", id="brace"),
    ],
)  # fmt: skip
def test_placeholders_are_checked_when_loading(
    recipe_dir: tuple[Path, RecipeWriter], option: str, message: str
) -> None:
    _, write = recipe_dir
    text = archive_recipe("zlib", "0" * 64, "https://example.invalid/z.tar.gz")
    text = text.replace(
        'system = "autotools"', f'system = "autotools"\noptions = ["-x", "{option}"]'
    )
    with pytest.raises(RecipeError, match=r"zlib\.toml: build\.options\[1\]: " + message):
        load_recipe(write("zlib", text))


@pytest.mark.parametrize("name", ["../../escape.tar.gz", "", "..", "a/b.tar.gz"])
def test_archive_file_must_be_a_plain_name(
    recipe_dir: tuple[Path, RecipeWriter], name: str
) -> None:
    _, write = recipe_dir
    text = archive_recipe("zlib", "0" * 64, "https://example.invalid/z.tar.gz", file=f'"{name}"')
    with pytest.raises(RecipeError, match=r"source\.file: expected a plain file name, no folders"):
        load_recipe(write("zlib", text))


def test_non_utf8_recipe_is_reported(recipe_dir: tuple[Path, RecipeWriter]) -> None:
    folder, _ = recipe_dir
    (folder / "zlib.toml").write_bytes(b'name = "zlib\xff"\n')
    with pytest.raises(RecipeError, match=r"zlib\.toml: not UTF-8 text"):
        load_recipe(folder / "zlib.toml")


def test_dependency_cycle_shows_its_path(recipe_dir: tuple[Path, RecipeWriter]) -> None:
    folder, write = recipe_dir
    for name, dep in (("a", "b"), ("b", "c"), ("c", "a")):
        text = archive_recipe(name, "0" * 64, "https://example.invalid/x.tar.gz")
        write(name, text.replace("depends = []", f'depends = ["{dep}"]'))
    with pytest.raises(RecipeError, match=r"dependency cycle a -> b -> c -> a"):
        build_order(load_recipes(folder), "a")


@pytest.mark.parametrize(
    ("value", "message"),
    [("[]", r"license_files: expected at least one licence file"),
     ('["COPYING", "COPYING"]', r"license_files\[1\]: 'COPYING' is listed twice")],
    ids=["empty", "twice"],
)  # fmt: skip
def test_license_files_are_checked(
    recipe_dir: tuple[Path, RecipeWriter], value: str, message: str
) -> None:
    _, write = recipe_dir
    text = archive_recipe("zlib", "0" * 64, "https://example.invalid/z.tar.gz")
    text = text.replace('license_files = ["COPYING"]', f"license_files = {value}")
    with pytest.raises(RecipeError, match=message):
        load_recipe(write("zlib", text))

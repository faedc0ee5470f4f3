"""Recipes: one TOML file per component, loaded into frozen dataclasses.

One loader validates every file. An unknown key is refused with the nearest valid key,
and a missing field or a wrong type names the file and the field.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from string import Formatter
from typing import Literal, TypeVar, assert_never, get_args

from .errors import RecipeError, did_you_mean

BuildSystem = Literal["autotools", "cmake"]
BUILD_SYSTEMS: tuple[BuildSystem, ...] = get_args(BuildSystem)

# A field's allowed form: the pattern, and how a message describes it.
_Shape = tuple[re.Pattern[str], str]
_SHA256: _Shape = (re.compile(r"[0-9a-f]{64}"), "64 lower-case hex digits")
_SHA1: _Shape = (re.compile(r"[0-9a-f]{40}"), "40 lower-case hex digits")
_FILE_NAME: _Shape = (re.compile(r"(?!\.\.?$)[A-Za-z0-9._+-]+"), "a plain file name, no folders")
_TIP = "fix the recipe; see the recipe format in README.md"


@dataclass(frozen=True, kw_only=True)
class DebianOrig:
    """A Debian source package whose orig archive is byte-identical to the release."""

    package: str  # the source package name, as `apt-get source` takes it
    orig: str  # the orig archive's file name in that package


@dataclass(frozen=True, kw_only=True)
class ArchiveSource:
    """A release archive, pinned by its SHA-256."""

    url: str  # the upstream address
    sha256: str  # of the archive as published
    file: str  # the file name mirrors hold it under
    debian: DebianOrig | None = None  # a second origin that serves the same bytes


@dataclass(frozen=True, kw_only=True)
class GitSource:
    """A git commit, pinned by its commit and tree ids, so its content is checked."""

    url: str
    commit: str
    tree: str


Source = ArchiveSource | GitSource


@dataclass(frozen=True, kw_only=True)
class BuildSpec:
    """How to build a component. Strings may use {prefix}, {triple} and {jobs}."""

    system: BuildSystem
    bootstrap: tuple[str, ...] = ()  # run in the source tree before configuring
    options: tuple[str, ...] = ()  # configure or cmake arguments
    env: tuple[tuple[str, str], ...] = ()  # extra environment for every build step
    install: tuple[str, ...] = ("install",)  # make targets that install into the prefix


@dataclass(frozen=True, kw_only=True)
class Recipe:
    name: str
    version: str
    license: str  # SPDX expression
    license_files: tuple[str, ...]  # paths in the source tree of its licence texts
    homepage: str
    depends: tuple[str, ...]
    source: Source
    build: BuildSpec
    # Regular expressions that no line of the patched tree's C files may match: proof that
    # a patch removed what it had to remove (e.g. every call of glibc's backtrace()).
    forbid: tuple[str, ...] = ()
    path: Path = field(compare=False)


T = TypeVar("T")


class _Table:
    """One TOML table of a recipe, read with its location for error messages."""

    def __init__(self, path: Path, where: str, data: Mapping[str, object], known: set[str]):
        self.path, self.where, self.data = path, where, data
        for key in data:
            if key not in known:
                hint = did_you_mean(key, known)
                raise self.error(key, f"unknown key{hint} (valid: {', '.join(sorted(known))})")

    def error(self, key: str, problem: str) -> RecipeError:
        return RecipeError(f"{self.path}: {self.where}{key}: {problem}", tip=_TIP)

    def _get(self, key: str, kind: type[T], kind_name: str, default: T | None) -> T:
        if key not in self.data:
            if default is None:
                raise self.error(key, f"missing required field (expected {kind_name})")
            return default
        value = self.data[key]
        if not isinstance(value, kind):
            raise self.error(key, f"expected {kind_name}, got {type(value).__name__} {value!r}")
        return value

    def text(self, key: str, default: str | None = None, shape: _Shape | None = None) -> str:
        value = self._get(key, str, "a string", default)
        if shape is not None and not shape[0].fullmatch(value):
            raise self.error(key, f"expected {shape[1]}, got {value!r}")
        return value

    def strings(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self._get(key, list, "a list of strings", list(default))
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(f"{key}[{index}]", f"expected a string, got {item!r}")
        return tuple(value)

    def table(self, key: str, known: set[str], *, required: bool = True) -> _Table | None:
        if key not in self.data and not required:
            return None
        value = self._get(key, dict, "a table", None)
        return _Table(self.path, f"{self.where}{key}.", value, known)


def _string_map(table: _Table, key: str) -> tuple[tuple[str, str], ...]:
    value = table._get(key, dict, "a table of strings", {})
    for name, item in value.items():
        if not isinstance(item, str):
            raise table.error(f"{key}.{name}", f"expected a string, got {item!r}")
    return tuple(sorted(value.items()))


def _source(top: _Table) -> Source:
    raw = top._get("source", dict, "a table", None)
    if "git" in raw:
        table = _Table(top.path, "source.", raw, {"git", "commit", "tree"})
        return GitSource(
            url=table.text("git"),
            commit=table.text("commit", shape=_SHA1),
            tree=table.text("tree", shape=_SHA1),
        )
    table = _Table(top.path, "source.", raw, {"url", "sha256", "file", "debian", "git"})
    url = table.text("url")
    debian_table = table.table("debian", {"package", "orig"}, required=False)
    debian = None
    if debian_table is not None:
        debian = DebianOrig(package=debian_table.text("package"), orig=debian_table.text("orig"))
    return ArchiveSource(
        url=url,
        sha256=table.text("sha256", shape=_SHA256),
        file=table.text("file", url.rsplit("/", 1)[-1], shape=_FILE_NAME),
        debian=debian,
    )


PLACEHOLDERS = ("prefix", "triple", "arch", "jobs")


def _check_placeholders(table: _Table, key: str, text: str) -> None:
    """Allow only the plain placeholders {prefix}, {triple}, {arch} and {jobs}."""
    try:
        fields = [
            (name, spec, conv)
            for _, name, spec, conv in Formatter().parse(text)
            if name is not None
        ]
    except ValueError as err:
        raise table.error(
            key, f"bad braces in {text!r}: {err} (write {{{{ for a literal brace)"
        ) from err
    for name, spec, conversion in fields:
        if name not in PLACEHOLDERS or spec or conversion:
            raise table.error(
                key,
                f"unknown placeholder {{{name}}} in {text!r}; expected one of "
                f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)}",
            )


def _build(top: _Table) -> BuildSpec:
    known = {"system", "bootstrap", "options", "env", "install"}
    table = top.table("build", known)
    assert table is not None
    system = table.text("system")
    if system not in BUILD_SYSTEMS:
        raise table.error("system", f"expected one of {', '.join(BUILD_SYSTEMS)}, got {system!r}")
    spec = BuildSpec(
        system=system,
        bootstrap=table.strings("bootstrap"),
        options=table.strings("options"),
        env=_string_map(table, "env"),
        install=table.strings("install", ("install",)),
    )
    for field_name, values in (("bootstrap", spec.bootstrap), ("options", spec.options)):
        for index, value in enumerate(values):
            _check_placeholders(table, f"{field_name}[{index}]", value)
    for name, value in spec.env:
        _check_placeholders(table, f"env.{name}", value)
    return spec


def _license_files(top: _Table) -> tuple[str, ...]:
    names = top.strings("license_files")
    if not names:
        raise top.error("license_files", "expected at least one licence file of the source, "
                        "got none (the package must carry every component's licence)")  # fmt: skip
    for index, name in enumerate(names):
        if name in names[:index]:
            raise top.error(f"license_files[{index}]", f"{name!r} is listed twice")
        if name.startswith("/") or ".." in Path(name).parts:
            raise top.error(f"license_files[{index}]", f"expected a path inside the source "
                            f"tree, got {name!r}")  # fmt: skip
    return names


def _forbid(top: _Table) -> tuple[str, ...]:
    table = top.table("checks", {"forbid"}, required=False)
    if table is None:
        return ()
    patterns = table.strings("forbid")
    for index, pattern in enumerate(patterns):
        try:
            re.compile(pattern)
        except re.error as err:
            raise table.error(f"forbid[{index}]", f"not a valid regular expression: {err}") from err
    return patterns


def load_recipe(path: Path) -> Recipe:
    """Load and validate one recipe file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise RecipeError(f"{path}: not UTF-8 text: {err}", tip=_TIP) from err
    except tomllib.TOMLDecodeError as err:
        raise RecipeError(f"{path}: not valid TOML: {err}", tip=_TIP) from err
    known = {
        "name", "version", "license", "license_files", "homepage", "depends", "source",
        "build", "checks",
    }  # fmt: skip
    top = _Table(path, "", data, known)
    name = top.text("name")
    if name != path.stem:
        raise top.error("name", f"expected the file's stem {path.stem!r}, got {name!r}")
    return Recipe(
        name=name,
        version=top.text("version"),
        license=top.text("license"),
        license_files=_license_files(top),
        homepage=top.text("homepage"),
        depends=top.strings("depends"),
        source=_source(top),
        build=_build(top),
        forbid=_forbid(top),
        path=path,
    )


def load_recipes(folder: Path) -> dict[str, Recipe]:
    """Load every recipe in a folder and check that their dependencies exist."""
    recipes = {p.stem: load_recipe(p) for p in sorted(folder.glob("*.toml"))}
    if not recipes:
        raise RecipeError(
            f"{folder}: no recipes (*.toml) found",
            tip="run from the project checkout, or pass --root DIR",
        )
    for recipe in recipes.values():
        for index, dep in enumerate(recipe.depends):
            if dep not in recipes:
                hint = did_you_mean(dep, recipes)
                raise RecipeError(
                    f"{recipe.path}: depends[{index}]: no recipe named {dep!r}{hint}",
                    tip=f"add recipes/{dep}.toml or fix the name",
                )
    return recipes


def build_order(recipes: Mapping[str, Recipe], target: str) -> list[Recipe]:
    """The recipes `target` needs, dependencies first, then `target` itself."""
    order: list[Recipe] = []
    path: list[str] = []

    def visit(name: str) -> None:
        if any(r.name == name for r in order):
            return
        if name in path:
            cycle = " -> ".join([*path[path.index(name) :], name])
            raise RecipeError(
                f"{recipes[name].path}: depends: dependency cycle {cycle}",
                tip="remove one of these names from its recipe's depends",
            )
        path.append(name)
        for dep in recipes[name].depends:
            visit(dep)
        path.pop()
        order.append(recipes[name])

    visit(target)
    return order


def source_label(source: Source) -> str:
    """A short, stable description of what pins a source."""
    match source:
        case ArchiveSource():
            return f"sha256:{source.sha256}"
        case GitSource():
            return f"git:{source.commit}"
        case _:
            assert_never(source)

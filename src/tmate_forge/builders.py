"""Build one component with its build system: autotools or CMake, static, into a prefix."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import assert_never

from .cmd import logged, require_tool
from .recipe import Recipe
from .toolchain import Toolchain


@dataclass(frozen=True, kw_only=True)
class BuildContext:
    recipe: Recipe
    source: Path  # a fresh, writable copy of the patched tree
    work: Path  # scratch space for out-of-tree builds
    prefix: Path  # where every component installs; later ones find earlier ones here
    toolchain: Toolchain
    cflags: tuple[str, ...]
    jobs: int
    log_file: Path

    def expand(self, text: str) -> str:
        """Fill the placeholders a recipe may use; the loader allowed only these."""
        return text.format_map({
            "prefix": str(self.prefix),
            "triple": self.toolchain.triple,
            "arch": self.toolchain.arch,
            "jobs": str(self.jobs),
        })  # fmt: skip

    def env(self) -> dict[str, str]:
        env = {
            **self.toolchain.env(),
            "CFLAGS": " ".join(self.cflags),
            "CPPFLAGS": f"-I{self.prefix}/include",
            "LDFLAGS": f"-L{self.prefix}/lib",
            # Only the prefix: the host's own .pc files must never leak into the link.
            "PKG_CONFIG_LIBDIR": f"{self.prefix}/lib/pkgconfig",
            "PKG_CONFIG_PATH": "",
            "SOURCE_DATE_EPOCH": "0",
        }
        env.update({key: self.expand(value) for key, value in self.recipe.build.env})
        return env

    def run(self, argv: list[str], cwd: Path, env: Mapping[str, str] | None = None) -> None:
        logged(argv, cwd=cwd, log_file=self.log_file, env=env or self.env(),
               what=f"build {self.recipe.name}")  # fmt: skip


def build_component(ctx: BuildContext) -> None:
    system = ctx.recipe.build.system
    match system:
        case "autotools":
            _autotools(ctx)
        case "cmake":
            _cmake(ctx)
        case _:
            assert_never(system)


def _autotools(ctx: BuildContext) -> None:
    require_tool("make", "build autotools components")
    spec = ctx.recipe.build
    if spec.bootstrap:
        require_tool("autoreconf", f"bootstrap {ctx.recipe.name}")
        ctx.run([ctx.expand(arg) for arg in spec.bootstrap], ctx.source)
    configure = [
        "./configure", f"--host={ctx.toolchain.triple}", f"--prefix={ctx.prefix}",
        *(ctx.expand(option) for option in spec.options),
    ]  # fmt: skip
    ctx.run(configure, ctx.source)
    ctx.run(["make", f"-j{ctx.jobs}"], ctx.source)
    ctx.run(["make", *spec.install], ctx.source)


def _cmake(ctx: BuildContext) -> None:
    require_tool("cmake", "build CMake components")
    build_dir = ctx.work / "cmake-build"
    env = ctx.env()
    configure = [
        "cmake", "-S", str(ctx.source), "-B", str(build_dir), "-G", "Unix Makefiles",
        "-DCMAKE_SYSTEM_NAME=Linux",
        f"-DCMAKE_SYSTEM_PROCESSOR={ctx.toolchain.arch}",
        f"-DCMAKE_C_COMPILER={env['CC']}",
        f"-DCMAKE_AR={env['AR']}",
        f"-DCMAKE_RANLIB={env['RANLIB']}",
        f"-DCMAKE_C_FLAGS={env['CFLAGS']} {env['CPPFLAGS']}",
        # No build type: CMake would otherwise add its own -O and -DNDEBUG flags.
        "-DCMAKE_BUILD_TYPE=",
        f"-DCMAKE_INSTALL_PREFIX={ctx.prefix}",
        "-DCMAKE_INSTALL_LIBDIR=lib",
        f"-DCMAKE_FIND_ROOT_PATH={ctx.prefix}",
        "-DCMAKE_FIND_ROOT_PATH_MODE_PROGRAM=NEVER",
        "-DCMAKE_FIND_ROOT_PATH_MODE_LIBRARY=ONLY",
        "-DCMAKE_FIND_ROOT_PATH_MODE_INCLUDE=ONLY",
        "-DCMAKE_FIND_ROOT_PATH_MODE_PACKAGE=ONLY",
        "-DBUILD_SHARED_LIBS=OFF",
        *(ctx.expand(option) for option in ctx.recipe.build.options),
    ]  # fmt: skip
    ctx.run(configure, ctx.work, env)
    ctx.run(["cmake", "--build", str(build_dir), "--parallel", str(ctx.jobs)], ctx.work, env)
    ctx.run(["cmake", "--install", str(build_dir)], ctx.work, env)

"""Where things live: the project's folders, the persistent cache and the mirrors."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .arch import Arch


@dataclass(frozen=True, kw_only=True)
class Layout:
    root: Path  # the project checkout
    cache: Path  # persistent across checkouts: source archives, git objects, zig's cache
    mirrors: tuple[str, ...]  # folders or URLs tried before any upstream address

    @property
    def recipes(self) -> Path:
        return self.root / "recipes"

    @property
    def patches(self) -> Path:
        return self.root / "patches"

    def build(self, arch: Arch) -> Path:
        return self.root / "build" / arch

    def dist(self, arch: Arch) -> Path:
        return self.root / "dist" / arch


def default_cache() -> Path:
    if explicit := os.environ.get("TMATE_FORGE_CACHE"):
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "tmate-forge"


def layout_from_env(root: Path) -> Layout:
    """The layout for a checkout, with the cache and mirrors the environment names."""
    return Layout(
        root=root.resolve(),
        cache=default_cache(),
        mirrors=tuple(os.environ.get("TMATE_FORGE_MIRROR", "").split()),
    )

"""Alpine package versions: a git snapshot after a release is RELEASE_gitYYYYMMDD-rN.

apk orders `_git` after the plain release, so 2.3.0_git20230602 sorts after 2.3.0 and
before 2.3.1: right for a commit that follows the 2.3.0 tag.
"""

from __future__ import annotations

import re
from datetime import date

from .errors import RecipeError

# apk-tools' version grammar: numbers with dots, one optional letter, suffixes, release.
_ALPINE = re.compile(
    r"[0-9]+(\.[0-9]+)*[a-z]?"
    r"(_(alpha|beta|pre|rc|cvs|svn|git|hg|p)[0-9]*)*"
    r"-r[0-9]+"
)
_GIT_DESCRIBE = re.compile(r"(?P<release>[0-9]+(\.[0-9]+)*)(-[0-9]+-g[0-9a-f]+)?")


def snapshot_pkgver(describe: str, committed: date, pkgrel: int, *, where: str) -> str:
    """The pkgver of a build of `git describe` output such as 2.3.0-68-gd7334ee4."""
    match = _GIT_DESCRIBE.fullmatch(describe)
    if match is None:
        raise RecipeError(
            f"{where}: version: expected a release or `git describe` form like "
            f"2.3.0-68-gd7334ee4, got {describe!r}",
            tip="set the recipe's version to the release tag, or git describe of the commit",
        )
    base = match["release"]
    if match.group(3):
        base += f"_git{committed:%Y%m%d}"
    return check_pkgver(f"{base}-r{pkgrel}", where=where)


def check_pkgver(pkgver: str, *, where: str) -> str:
    if not _ALPINE.fullmatch(pkgver):
        raise RecipeError(
            f"{where}: pkgver: {pkgver!r} is not an Alpine version (e.g. 2.3.0_git20230602-r0)",
            tip="see apk-tools' version rules: digits and dots, a suffix such as _git, -rN",
        )
    return pkgver

"""The environment settings of the packaging stages, read and checked before any build:
a bad one should not wait for a five-minute compile to be reported."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .apkv2 import SigningKey
from .errors import UsageError
from .signing import load_signing_key

LAST_TAR_TIME = 8**11 - 1  # the largest mtime a ustar header holds: in the year 2242


@dataclass(frozen=True, kw_only=True)
class PackageSettings:
    key: SigningKey  # TMATE_FORGE_SIGNING_KEY, or the generated key
    packager: str  # TMATE_FORGE_PACKAGER
    epoch: int | None  # SOURCE_DATE_EPOCH, when it is set


def package_settings() -> PackageSettings:
    key = load_signing_key()
    packager = _text_setting("TMATE_FORGE_PACKAGER", "tmate-forge")
    return PackageSettings(key=key, packager=packager, epoch=source_date_epoch())


def source_date_epoch() -> int | None:
    """SOURCE_DATE_EPOCH, when it is set: the time every artifact is stamped with."""
    epoch = _text_setting("SOURCE_DATE_EPOCH", "")
    # ASCII digits only (str.isdigit also takes "\u00b2"), no later than a tar header holds.
    # The length first: int() refuses strings of more than 4300 digits with a ValueError.
    if epoch and not (epoch.isascii() and epoch.isdigit() and len(epoch) <= len(str(LAST_TAR_TIME))
                      and int(epoch) <= LAST_TAR_TIME):  # fmt: skip
        raise UsageError(f"SOURCE_DATE_EPOCH={epoch!r}: expected whole seconds since 1970, "
                         f"from 0 to {LAST_TAR_TIME}",
                         tip="unset it, or set it to e.g. $(git log -1 --format=%ct)")  # fmt: skip
    return int(epoch) if epoch else None


def _text_setting(name: str, default: str) -> str:
    """A setting that goes into .PKGINFO: one line, no control characters."""
    value = os.environ.get(name, default)
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise UsageError(f"{name}={value!r}: control characters are not allowed",
                         tip=f"set {name} to a single line of text")  # fmt: skip
    return value

"""The image's file system: the APK's payload without OpenRC, plus a tiny base layout.

The server looks up `nobody` to drop to in every session's jail, and makes /tmp/tmate
itself, so /etc/passwd, /etc/group and a sticky /tmp are all the base it needs. The keys
folder exists in the image so that a fresh volume mounted there starts out mode 0700.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Sequence
from pathlib import Path

from .apkv2 import Entry
from .errors import BuildError

KEYS_FOLDER = "etc/tmate-keys"

# The OpenRC service has no use without OpenRC; the launcher is the entrypoint instead.
_NOT_IN_IMAGE = ("etc/init.d", "etc/conf.d")

_PASSWD = "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n"
_GROUP = "root:x:0:\nnobody:x:65534:\n"

BASE_LAYOUT = (
    Entry(path="etc", mode=0o755, directory=True),
    Entry(path="etc/passwd", mode=0o644, data=_PASSWD.encode()),
    Entry(path="etc/group", mode=0o644, data=_GROUP.encode()),
    Entry(path=KEYS_FOLDER, mode=0o700, directory=True),
    Entry(path="tmp", mode=0o1777, directory=True),
)


def _kept(entry: Entry) -> bool:
    return not any(entry.path == top or entry.path.startswith(f"{top}/") for top in _NOT_IN_IMAGE)


def image_files(payload: Sequence[Entry]) -> list[Entry]:
    """The payload minus OpenRC, merged with the base layout, sorted by path."""
    merged = {entry.path: entry for entry in payload if _kept(entry)}
    for entry in BASE_LAYOUT:
        if entry.path in merged and not (entry.directory and merged[entry.path].directory):
            raise BuildError(f"{entry.path}: the package holds it, but the image's base "
                             "layout owns that path", tip="drop it from the package")  # fmt: skip
        merged[entry.path] = entry
    return [merged[path] for path in sorted(merged)]


def write_rootfs_tar(entries: Sequence[Entry], mtime: int, path: Path) -> None:
    """A plain tar of the entries, owned by root, every time stamp set to mtime."""
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as archive:
        for entry in entries:
            info = tarfile.TarInfo(entry.path)
            info.mode, info.mtime = entry.mode, mtime
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if entry.directory:
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            elif entry.link:
                info.type, info.linkname = tarfile.SYMTYPE, entry.link
                archive.addfile(info)
            else:
                info.size = len(entry.data)
                archive.addfile(info, io.BytesIO(entry.data))

"""The tmate-forge command: one subcommand per stage, errors reported once here."""

from __future__ import annotations

import argparse
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from . import pipeline
from .arch import parse_arch
from .compile import PRODUCT
from .errors import FILE_SYSTEM_EXIT_CODE, ForgeError
from .layout import layout_from_env


def _parser() -> argparse.ArgumentParser:
    # --root and --debug are accepted before and after the stage, since nox passes what
    # follows `--` after the stage name; SUPPRESS keeps a subparser from resetting them.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", type=Path, default=argparse.SUPPRESS,
                        help="the project checkout (default: the current folder)")  # fmt: skip
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks on errors")  # fmt: skip
    parser = argparse.ArgumentParser(
        prog="tmate-forge",
        description="Build a static musl tmate-ssh-server from pinned, verified sources.",
        parents=[common],
    )
    stages = parser.add_subparsers(dest="stage", required=True)
    stages.add_parser("sources", help="fetch and verify every pinned source", parents=[common])
    for name, text in (
        ("patch", "unpack the sources for one architecture and apply our patches"),
        ("compile", "build the static binary, its debug file and manifest into dist/ARCH"),
    ):
        stage = stages.add_parser(name, help=text, parents=[common])
        stage.add_argument("--arch", help="x86_64 or aarch64 (default: the host's)")
        stage.add_argument("--component", default=PRODUCT,
                           help="stop at this component (default: %(default)s)")  # fmt: skip
    apk = stages.add_parser(
        "apk",
        parents=[common],
        help="package the static build as a signed Alpine APK with its index",
    )
    apk.add_argument("--arch", help="x86_64 or aarch64 (default: the host's)")
    image = stages.add_parser(
        "image",
        parents=[common],
        help="build the OCI image from the APK's payload with buildah, and load it into podman",
    )
    image.add_argument("--arch", help="x86_64 or aarch64 (default: the host's)")
    image.add_argument(
        "--no-load",
        dest="load",
        action="store_false",
        help="write dist/ARCH/*.oci.tar only; do not load it into podman",
    )
    release = stages.add_parser(
        "release",
        parents=[common],
        help="every architecture, the image index, SBOMs, the source bundle and SHA256SUMS",
    )
    release.add_argument(
        "--assemble-only",
        action="store_true",
        help="take each architecture's artifacts as they are in dist/ARCH (the CI's last job)",
    )
    return parser


class Terminated(BaseException):
    """SIGTERM, turned into an exception so that every cleanup on the way out runs."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Python's default SIGTERM ends the process without running `finally` blocks: a
    # `timeout`, a CI cancel or `kill` would leave scratch folders and buildah containers.
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return _run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    # Filled here, not by set_defaults: the shared --root action would then carry the
    # default into the subparser, which would overwrite a --root given before the stage.
    args.root = getattr(args, "root", Path.cwd())
    args.debug = getattr(args, "debug", False)
    try:
        layout = layout_from_env(args.root)
        if args.stage == "sources":
            pipeline.run_sources(layout)
        elif args.stage == "patch":
            pipeline.run_patch(layout, parse_arch(args.arch), args.component)
        elif args.stage == "compile":
            pipeline.run_compile(layout, parse_arch(args.arch), args.component)
        elif args.stage == "apk":
            pipeline.run_apk(layout, parse_arch(args.arch))
        elif args.stage == "image":
            pipeline.run_image(layout, parse_arch(args.arch), load=args.load)
        else:
            pipeline.run_release(layout, assemble_only=args.assemble_only)
    except ForgeError as err:
        if args.debug:
            traceback.print_exc()
        print(f"ERROR: {err}", file=sys.stderr)
        return err.exit_code
    except OSError as err:
        # A folder that cannot be made or written: the cache, build/ or dist/.
        if args.debug:
            traceback.print_exc()
        where = err.filename if err.filename is not None else "a file"
        print(f"ERROR: {where}: {err.strerror or err}", file=sys.stderr)
        print("TIP: check that the folder exists, is a folder and is writable "
              "(TMATE_FORGE_CACHE, build/, dist/)", file=sys.stderr)  # fmt: skip
        return FILE_SYSTEM_EXIT_CODE
    except KeyboardInterrupt:
        print("ERROR: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Terminated:
        print("ERROR: stopped by SIGTERM; run the same command again to resume", file=sys.stderr)
        return 128 + signal.SIGTERM
    return 0


if __name__ == "__main__":
    sys.exit(main())

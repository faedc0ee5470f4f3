"""The components Debian serves, built for real with zig and used by small C programs.

These run in CI: the sources come from a mirror, the cache or Debian's source archive
(scripts/setup-host adds the deb-src entry), and zig comes from PyPI.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tmate_forge.arch import Arch
from tmate_forge.layout import layout_from_env
from tmate_forge.pipeline import run_compile
from tmate_forge.toolchain import prepare_toolchain

from .conftest import ROOT, require_tools

pytestmark = pytest.mark.toolchain
ARCH: Arch = "x86_64"


@pytest.fixture(scope="module")
def prefix() -> Path:
    """Build libssh (with mbedtls), libevent and ncurses through the real stages."""
    require_tools("cmake", "make", "patch", "tic", "pkg-config")
    layout = layout_from_env(ROOT)
    for component in ("libssh", "libevent", "ncurses"):
        run_compile(layout, ARCH, component)
    return layout.build(ARCH) / "prefix"


def _pkg_config(prefix: Path, module: str) -> list[str]:
    """The static compile and link flags of module, from the prefix's .pc files only."""
    env = {"PKG_CONFIG_LIBDIR": str(prefix / "lib" / "pkgconfig"), "PATH": "/usr/bin:/bin"}
    flags = subprocess.run(["pkg-config", "--static", "--cflags", "--libs", module],
                           capture_output=True, text=True, check=True, env=env).stdout  # fmt: skip
    return flags.split()


def _run_c(
    prefix: Path, tmp_path: Path, source: str, libs: list[str]
) -> subprocess.CompletedProcess[str]:
    """Compile a C program statically against the prefix with zig, then run it."""
    toolchain = prepare_toolchain(ARCH, tmp_path, layout_from_env(ROOT).cache)
    program = tmp_path / "probe.c"
    program.write_text(source)
    binary = tmp_path / "probe"
    subprocess.run(
        [str(toolchain.bin / "cc"), "-static", "-O1", f"-I{prefix}/include", str(program),
         "-o", str(binary), f"-L{prefix}/lib", *libs],
        check=True, env=toolchain.env() | {"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    return subprocess.run([str(binary)], capture_output=True, text=True, timeout=30, env={})


def test_libssh_initialises_with_mbedtls_threading(prefix: Path, tmp_path: Path) -> None:
    # Without patches/mbedtls/0001 (pthread threading), ssh_init() returns -1.
    source = """
        #include <stdio.h>
        #include <libssh/libssh.h>
        #include <libssh/server.h>
        int main(void) {
            if (ssh_init() != 0) { puts("ssh_init failed"); return 1; }
            ssh_bind bind = ssh_bind_new();
            printf("%s %s\\n", ssh_version(0), bind ? "bind" : "nobind");
            return bind ? 0 : 2;
        }
    """
    run = _run_c(prefix, tmp_path, source, ["-lssh", "-lmbedtls", "-lmbedx509", "-lmbedcrypto"])
    assert run.returncode == 0, run.stdout
    assert run.stdout.split()[0] == "0.11.5/mbedtls"
    assert run.stdout.split()[1] == "bind"


def test_libssh_uses_mbedtls_chacha20(prefix: Path) -> None:
    # libssh finds mbedTLS's chacha20 header only through -I PREFIX/include; otherwise it
    # silently compiles its own chacha20-poly1305 instead.
    cache = (prefix.parent / "work" / "libssh" / "cmake-build" / "CMakeCache.txt").read_text()
    assert "HAVE_MBEDTLS_CHACHA20_H:INTERNAL=1" in cache
    assert "HAVE_MBEDTLS_POLY1305_H:INTERNAL=1" in cache
    members = subprocess.run(["ar", "t", str(prefix / "lib" / "libssh.a")],
                             capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    assert "libmbedcrypto.c.o" in members
    assert "chachapoly.c.o" not in members


def test_ncurses_has_builtin_terminfo(prefix: Path, tmp_path: Path) -> None:
    # --disable-database: no terminfo files exist; the fallbacks must be compiled in.
    source = """
        #include <stdio.h>
        #include <curses.h>
        #include <term.h>
        int main(void) {
            int err = 0;
            if (setupterm("tmux-256color", 1, &err) != OK) { printf("err %d\\n", err); return 1; }
            printf("colors=%d\\n", tigetnum("colors"));
            return 0;
        }
    """
    run = _run_c(prefix, tmp_path, source, _pkg_config(prefix, "ncurses"))
    assert run.returncode == 0, run.stdout
    assert run.stdout.strip() == "colors=256"
    assert not (prefix / "lib" / "libncursesw.a").exists()


def test_libevent_runs_an_event_loop(prefix: Path, tmp_path: Path) -> None:
    source = """
        #include <stdio.h>
        #include <event2/event.h>
        static void on_timer(evutil_socket_t fd, short what, void *arg) { *(int *)arg = 1; }
        int main(void) {
            int fired = 0;
            struct event_base *base = event_base_new();
            struct timeval tv = {0, 1000};
            struct event *ev = evtimer_new(base, on_timer, &fired);
            evtimer_add(ev, &tv);
            event_base_dispatch(base);
            printf("%s fired=%d\\n", event_get_version(), fired);
            return fired ? 0 : 1;
        }
    """
    run = _run_c(prefix, tmp_path, source, _pkg_config(prefix, "libevent"))
    assert run.returncode == 0, run.stdout
    assert run.stdout.strip() == "2.1.13-stable fired=1"


def test_second_run_rebuilds_nothing(prefix: Path, capfd: pytest.CaptureFixture[str]) -> None:
    run_compile(layout_from_env(ROOT), ARCH, "libssh")
    err = capfd.readouterr().err
    assert "mbedtls: up to date" in err
    assert "libssh: up to date" in err
    assert "==> compile mbedtls" not in err

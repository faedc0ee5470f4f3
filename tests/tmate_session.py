"""Drive a real tmate session against a given tmate-ssh-server binary.

Test support for tmate-forge: start a server (optionally under an emulator such as
``qemu-aarch64-static``), connect Debian's ``tmate`` client to it, attach a second
client over ``ssh`` and check that what runs in the session reaches the viewer.

Typical use::

    keys = make_host_keys(tmp / "keys")
    port = free_port()
    with running_server(binary, keys.folder, port, log=tmp / "server.log") as server:
        with tmate_session("127.0.0.1", port, keys.fingerprints, tmp / "client",
                           server_log=server.log) as session:
            assert viewer_sees(session, "MARKER-42")
    assert garbage_bind_key_lines(server.read_log()) == []

Everything here uses argument lists (never a shell), its own ``HOME`` and its own tmux
socket, so the user's ``~/.tmate.conf``, ``~/.ssh`` and running tmux/tmate servers are
not touched.  The server's work directory is fixed at ``/tmp/tmate`` by the server
itself; it needs root because every session chroots into ``/tmp/tmate/jail``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import select
import signal
import socket
import struct
import subprocess
import termios
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

__all__ = [
    "DEFAULT_READY_TIMEOUT",
    "Fingerprints",
    "HarnessError",
    "HostKeys",
    "ServerProcess",
    "Session",
    "Viewer",
    "free_port",
    "garbage_bind_key_lines",
    "make_host_keys",
    "running_server",
    "tmate_session",
    "viewer_sees",
    "wait_listening",
]

#: Generous defaults: the server may run under qemu-user, which is slow to start.
DEFAULT_START_TIMEOUT = 30.0
DEFAULT_READY_TIMEOUT = 30.0
DEFAULT_VIEWER_TIMEOUT = 30.0
#: How many lines of a log an error message quotes.
LOG_TAIL_LINES = 40
#: The terminal type given to the tmate client and to the ssh viewer.  The server
#: runs ``setupterm()`` with the viewer's TERM, so it must name a real terminfo entry.
TERM = "xterm-256color"

# Environment variables that would make tmate/ssh talk to something of the user's.
_SCRUBBED_ENV = ("TMUX", "TMUX_PANE", "TMUX_TMPDIR", "SSH_AUTH_SOCK", "SSH_AGENT_PID")


class HarnessError(RuntimeError):
    """A step of the harness failed; the message carries the evidence.

    ``str(err)`` includes the last :data:`LOG_TAIL_LINES` lines of the server log and
    of the client's output, when they are known, so a failing test explains itself.
    """

    def __init__(
        self,
        message: str,
        *,
        server_log: Path | None = None,
        client_output: str = "",
        client_log: Path | None = None,
    ) -> None:
        self.reason = message
        self.server_log = server_log
        self.client_output = client_output
        self.client_log = client_log
        parts = [message]
        if client_output.strip():
            parts.append(_section("client stderr/output", _tail(client_output)))
        if client_log is not None:
            parts.append(_section(f"client log {client_log}", _tail(_read_text(client_log))))
        if server_log is not None:
            parts.append(_section(f"server log {server_log}", _tail(_read_text(server_log))))
        super().__init__("\n".join(parts))


def _section(title: str, body: str) -> str:
    return f"--- {title} (last {LOG_TAIL_LINES} lines) ---\n{body or '(empty)'}"


def _tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc.strerror})"


# --------------------------------------------------------------------------- host keys


@dataclass(frozen=True)
class Fingerprints:
    """The server's host key fingerprints, as ``SHA256:...`` strings."""

    rsa: str
    ed25519: str


@dataclass(frozen=True)
class HostKeys:
    """A folder holding ``ssh_host_ed25519_key`` and ``ssh_host_rsa_key``."""

    folder: Path
    fingerprints: Fingerprints


def _run(argv: Sequence[str], *, timeout: float = 60.0, what: str = "") -> str:
    """Run a short command, return its stdout, raise :class:`HarnessError` on failure."""
    try:
        done = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"{what or argv[0]}: timed out after {timeout:g}s: {argv}") from exc
    except OSError as exc:
        raise HarnessError(f"{what or argv[0]}: cannot run {argv}: {exc}") from exc
    if done.returncode != 0:
        raise HarnessError(
            f"{what or argv[0]}: {argv} exited with {done.returncode}",
            client_output=done.stderr + done.stdout,
        )
    return done.stdout


def key_fingerprint(key: Path) -> str:
    """The ``SHA256:`` fingerprint of a private or public key file."""
    out = _run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(key)], what="ssh-keygen -l")
    # "3072 SHA256:Kz6a... comment (RSA)"
    fields = out.split()
    if len(fields) < 2 or not fields[1].startswith("SHA256:"):
        raise HarnessError(f"unexpected ssh-keygen -l output for {key}: {out!r}")
    return fields[1]


def make_host_keys(folder: Path) -> HostKeys:
    """Create the server's host keys in ``folder`` and return their fingerprints.

    Runs ``ssh-keygen -t ed25519`` and ``ssh-keygen -t rsa -b 3072`` (no passphrase).
    A key file that already exists is kept and only fingerprinted, so calling this
    twice on one folder is harmless.  Private keys end up mode 0600.
    """
    folder.mkdir(parents=True, exist_ok=True)
    specs = {"ed25519": ["-t", "ed25519"], "rsa": ["-t", "rsa", "-b", "3072"]}
    prints: dict[str, str] = {}
    for name, type_args in specs.items():
        key = folder / f"ssh_host_{name}_key"
        if not key.exists():
            _run(
                [
                    "ssh-keygen",
                    "-q",
                    *type_args,
                    "-N",
                    "",
                    "-C",
                    f"tmate-forge test {name}",
                    "-f",
                    str(key),
                ],
                what="ssh-keygen",
            )
        key.chmod(0o600)
        prints[name] = key_fingerprint(key)
    return HostKeys(folder, Fingerprints(rsa=prints["rsa"], ed25519=prints["ed25519"]))


# ------------------------------------------------------------------------------ server


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def wait_listening(
    process: subprocess.Popen[Any], port: int, log: Path, timeout: float = DEFAULT_START_TIMEOUT
) -> None:
    """Wait until 127.0.0.1:port accepts TCP; fail with the log if process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while not _port_open("127.0.0.1", port):
        if process.poll() is not None:
            raise HarnessError(f"exited with {process.returncode} before listening", server_log=log)
        if time.monotonic() > deadline:
            raise HarnessError(f"not listening on port {port} after {timeout:g}s", server_log=log)
        time.sleep(0.2)


def _children(pid: int) -> list[int]:
    """All live descendants of ``pid`` (read from /proc; empty if unavailable)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ..."; comm may contain spaces and parentheses.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill(pids: Sequence[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@dataclass
class ServerProcess:
    """A running tmate-ssh-server; see :func:`running_server`."""

    argv: list[str]
    host: str
    port: int
    log: Path
    process: subprocess.Popen[bytes]
    #: Session processes seen while running (they leave our process group).
    session_pids: set[int] = field(default_factory=set)

    def read_log(self) -> str:
        """The whole server log so far, undecodable bytes replaced."""
        return _read_text(self.log)

    def error(self, message: str) -> HarnessError:
        """A :class:`HarnessError` that quotes this server's log."""
        return HarnessError(message, server_log=self.log)

    def check_alive(self) -> None:
        """Raise if the server process has exited."""
        code = self.process.poll()
        if code is not None:
            raise self.error(f"tmate-ssh-server exited with status {code}: {self.argv}")


def _stop_server(server: ServerProcess, grace: float = 5.0) -> None:
    """Stop the server and every session process it forked.

    Each session child calls ``setpgid(0, 0)`` and outlives its parent, so killing the
    process group is not enough: descendants are collected from /proc first.
    """
    pids = [server.process.pid, *_children(server.process.pid)]
    server.session_pids.update(pids[1:])
    _kill(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if server.process.poll() is not None and not any(_alive(p) for p in pids[1:]):
            break
        time.sleep(0.05)
    _kill([p for p in pids[1:] if _alive(p)], signal.SIGKILL)
    if server.process.poll() is None:
        server.process.kill()
    server.process.wait(timeout=grace)


@contextlib.contextmanager
def running_server(
    binary: Path,
    keys: Path,
    port: int,
    *,
    prefix: Sequence[str] = (),
    log: Path,
    host: str = "127.0.0.1",
    timeout: float = DEFAULT_START_TIMEOUT,
    extra_args: Sequence[str] = (),
) -> Iterator[ServerProcess]:
    """Run ``[*prefix, binary, -k keys, -p port, -b host, -h host, -v]`` for the block.

    stdout and stderr go to ``log``.  Returns once ``host:port`` accepts TCP (the probe
    connection shows up in the log as one short-lived ``Connection accepted`` that ends
    in a socket error; that is expected).  Raises :class:`HarnessError` with the log tail
    if the process dies or the port does not open within ``timeout`` seconds.  The
    server and its session children are always stopped on exit.
    """
    argv = [
        *prefix,
        str(binary),
        "-k",
        str(keys),
        "-p",
        str(port),
        "-b",
        host,
        "-h",
        host,
        "-v",
        *extra_args,
    ]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as log_file:
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise HarnessError(f"cannot start {argv}: {exc}", server_log=log) from exc
    server = ServerProcess(argv=argv, host=host, port=port, log=log, process=process)
    try:
        deadline = time.monotonic() + timeout
        while not _port_open(host, port):
            server.check_alive()
            if time.monotonic() > deadline:
                raise server.error(
                    f"tmate-ssh-server did not accept TCP on {host}:{port} "
                    f"within {timeout:g}s: {argv}"
                )
            time.sleep(0.1)
        yield server
    finally:
        _stop_server(server)


# ----------------------------------------------------------------------------- session

_SSH_RE = re.compile(r"^ssh (?:-p ?(?P<port>\d+) )?(?P<token>[A-Za-z0-9_=+/-]+)@(?P<host>\S+)$")

#: Client log lines after which waiting longer is pointless.
_CLIENT_FATAL = ("Cannot authenticate server",)


@dataclass
class Session:
    """A detached tmate client connected to the server; see :func:`tmate_session`."""

    workdir: Path
    config: Path
    socket: Path
    env: dict[str, str]
    server_log: Path | None
    ssh: str = ""
    ssh_ro: str = ""
    ssh_host: str = ""
    ssh_port: int = 22
    token: str = ""

    def client_log(self) -> Path | None:
        """The ``tmate -v`` log of the client's background process, if written yet."""
        logs = sorted(self.workdir.glob("tmate-server-*.log"))
        return logs[-1] if logs else None

    def client_pid(self) -> int | None:
        """PID of the client's background process, taken from its log's name."""
        log = self.client_log()
        if log is None:
            return None
        digits = log.stem.rsplit("-", 1)[-1]
        return int(digits) if digits.isdigit() else None

    def error(self, message: str, output: str = "") -> HarnessError:
        """A :class:`HarnessError` quoting the server log and the client's output/log."""
        return HarnessError(
            message, server_log=self.server_log, client_output=output, client_log=self.client_log()
        )

    def tmate_argv(self, *args: str) -> list[str]:
        """``tmate -S SOCKET ARGS...`` as an argument list."""
        return ["tmate", "-S", str(self.socket), *args]

    def tmate(self, *args: str, timeout: float = 15.0) -> str:
        """Run one tmate command against this session's socket; return its stdout."""
        argv = self.tmate_argv(*args)
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                env=self.env,
                cwd=self.workdir,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise self.error(f"{argv} timed out after {timeout:g}s") from exc
        if done.returncode != 0:
            raise self.error(f"{argv} exited with {done.returncode}", done.stderr + done.stdout)
        return done.stdout

    def display(self, fmt: str) -> str:
        """``tmate display -p FMT`` (a format such as ``#{tmate_ssh}``), stripped."""
        return self.tmate("display", "-p", fmt).strip()

    def send_keys(self, *keys: str) -> None:
        """``tmate send-keys KEYS...`` into the session's active pane."""
        self.tmate("send-keys", *keys)

    def leave_modes(self, timeout: float = 10.0) -> None:
        """Dismiss the message screen tmate shows in the pane, so keys reach the shell.

        After connecting, the client puts its pane in a view mode listing its messages
        ("Press <q> or <ctrl-c> to continue"); keys sent then go to that mode, not to the
        shell.  ``q`` leaves it; ``#{pane_in_mode}`` says when we are out.
        """
        deadline = time.monotonic() + timeout
        while self.display("#{pane_in_mode}") == "1":
            if time.monotonic() > deadline:
                raise self.error(f"pane still in a mode after {timeout:g}s")
            self.send_keys("q")
            time.sleep(0.05)

    def client_log_text(self) -> str:
        log = self.client_log()
        return _read_text(log) if log is not None else ""


def _client_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env.update(HOME=str(home), TERM=TERM, SHELL="/bin/sh")
    return env


def write_client_config(
    path: Path, host: str, port: int, fingerprints: Fingerprints, extra: Sequence[str] = ()
) -> None:
    """Write the tmate client configuration for a private server."""
    lines = [
        f"set -g tmate-server-host {host}",
        f"set -g tmate-server-port {port}",
        f'set -g tmate-server-rsa-fingerprint "{fingerprints.rsa}"',
        f'set -g tmate-server-ed25519-fingerprint "{fingerprints.ed25519}"',
        # A plain POSIX shell without rc files, whatever the caller's SHELL.
        # tmate 2.4.0 has no update check to switch off.
        "set -g default-shell /bin/sh",
        *extra,
    ]
    path.write_text("\n".join(lines) + "\n")


def _wait_ready(session: Session, timeout: float) -> None:
    """Run ``tmate wait tmate-ready`` but fail fast on a fatal client log line.

    With a wrong fingerprint the client never gives up: it logs ``Cannot authenticate
    server`` and reconnects every ~2 s, and ``wait tmate-ready`` blocks forever.
    """
    argv = session.tmate_argv("wait", "tmate-ready")
    waiter = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=session.env,
        cwd=session.workdir,
    )
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                out, _ = waiter.communicate(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
            else:
                if waiter.returncode == 0:
                    return
                raise session.error(
                    f"{argv} exited with {waiter.returncode}", out.decode(errors="replace")
                )
            text = session.client_log_text()
            fatal = next((line for line in _CLIENT_FATAL if line in text), None)
            if fatal is not None:
                raise session.error(
                    f"tmate client cannot connect: {fatal!r} (wrong "
                    f"tmate-server-*-fingerprint in {session.config}?)"
                )
            if time.monotonic() > deadline:
                raise session.error(
                    f"tmate session not ready within {timeout:g}s ({argv} still blocked)"
                )
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()


def _kill_client(session: Session) -> None:
    pid = session.client_pid()
    if session.socket.exists():
        with contextlib.suppress(HarnessError):
            session.tmate("kill-server", timeout=10.0)
    if pid is None:
        return
    deadline = time.monotonic() + 5.0
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        _kill([pid, *_children(pid)], signal.SIGKILL)


@contextlib.contextmanager
def tmate_session(
    host: str,
    port: int,
    fingerprints: Fingerprints,
    workdir: Path,
    *,
    server_log: Path | None = None,
    timeout: float = DEFAULT_READY_TIMEOUT,
    extra_config: Sequence[str] = (),
) -> Iterator[Session]:
    """Start a detached tmate client against ``host:port`` and yield it once ready.

    Writes ``workdir/tmate.conf``, runs ``tmate -v -f CONF -S SOCK new-session -d`` with
    ``HOME=workdir/home`` and ``cwd=workdir`` (``-v`` makes the client's background
    process write ``tmate-server-PID.log`` there, which is where connection errors
    show), waits for ``tmate-ready`` and reads ``#{tmate_ssh}``.  The client is killed
    with ``kill-server`` on exit.  ``server_log`` is only used to quote in errors.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in workdir.glob("tmate-*.log"):  # client_log() must find this run's log
        stale.unlink()
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    config = workdir / "tmate.conf"
    write_client_config(config, host, port, fingerprints, extra_config)
    sock = workdir / "tmate.sock"
    # AF_UNIX paths are limited to 107 bytes.
    if len(os.fsencode(sock)) > 100:
        raise HarnessError(f"socket path too long for AF_UNIX: {sock}")
    session = Session(
        workdir=workdir, config=config, socket=sock, env=_client_env(home), server_log=server_log
    )
    argv = ["tmate", "-v", "-f", str(config), "-S", str(sock), "new-session", "-d"]
    try:
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                env=session.env,
                cwd=workdir,
                timeout=30.0,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise session.error(f"cannot start {argv}: {exc}") from exc
        if done.returncode != 0:
            raise session.error(f"{argv} exited with {done.returncode}", done.stderr + done.stdout)
        _wait_ready(session, timeout)
        session.ssh = session.display("#{tmate_ssh}")
        session.ssh_ro = session.display("#{tmate_ssh_ro}")
        match = _SSH_RE.match(session.ssh)
        if match is None:
            raise session.error(f"unexpected #{{tmate_ssh}}: {session.ssh!r}")
        session.token = match["token"]
        session.ssh_host = match["host"]
        session.ssh_port = int(match["port"] or 22)
        session.leave_modes()
        yield session
    finally:
        _kill_client(session)
        _forget_session(session)


def _forget_session(session: Session) -> None:
    """Remove this session's socket and ``ro-`` link from the server's work directory.

    The session daemon creates them and then chroots into ``/tmp/tmate/jail``, so it can
    never unlink them; without this they pile up in ``/tmp/tmate/sessions``.
    """
    sessions = Path("/tmp/tmate/sessions")
    ro_token = session.ssh_ro.split("@", 1)[0].rsplit(" ", 1)[-1]
    for token in (session.token, ro_token):
        if token and "/" not in token and not token.startswith("."):
            with contextlib.suppress(OSError):
                (sessions / token).unlink()


# ------------------------------------------------------------------------------ viewer


@dataclass
class Viewer:
    """A second client attached over ``ssh -tt`` under a pseudo-terminal.

    Use as a context manager; :meth:`wait_for` reads the terminal until a text shows.
    ``transcript`` holds every byte the viewer's terminal received.
    """

    session: Session
    cols: int = 80
    rows: int = 24
    transcript: bytearray = field(default_factory=bytearray)
    _master: int = -1
    _process: subprocess.Popen[bytes] | None = None
    _stderr: Path | None = None

    def argv(self, identity: Path) -> list[str]:
        s = self.session
        return [
            "ssh",
            "-tt",
            "-F",
            "/dev/null",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "IdentitiesOnly=yes",
            "-i",
            str(identity),
            "-o",
            "ConnectTimeout=30",
            "-p",
            str(s.ssh_port),
            f"{s.token}@{s.ssh_host}",
        ]

    def _identity(self) -> Path:
        """A throwaway key, so ssh never looks at a real ~/.ssh.

        An open session accepts auth "none" (this harness needs no key); the key is there
        so a session restricted with ``tmate-authorized-keys`` can be tested the same way.
        """
        key = self.session.workdir / "viewer_ed25519"
        if not key.exists():
            _run(
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "tmate-forge viewer",
                    "-f",
                    str(key),
                ],
                what="ssh-keygen (viewer key)",
            )
        return key

    def __enter__(self) -> Self:
        identity = self._identity()
        master, slave = os.openpty()
        self._master = master
        try:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", self.rows, self.cols, 0, 0))
            self._stderr = self.session.workdir / "viewer-ssh.stderr"
            with self._stderr.open("wb") as err:
                self._process = subprocess.Popen(
                    self.argv(identity),
                    stdin=slave,
                    stdout=slave,
                    stderr=err,
                    env=self.session.env,
                    cwd=self.session.workdir,
                    start_new_session=True,
                )
        except BaseException:
            os.close(master)
            self._master = -1
            raise
        finally:
            os.close(slave)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop ssh and close the terminal (idempotent)."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._master >= 0:
            os.close(self._master)
            self._master = -1

    def text(self) -> str:
        """The transcript with escape sequences removed (for messages and matching)."""
        return strip_ansi(self.transcript.decode("utf-8", errors="replace"))

    def _pump(self, until: float) -> bool:
        """Read what is available until ``until``; False once the terminal hung up."""
        remaining = max(0.0, until - time.monotonic())
        ready, _, _ = select.select([self._master], [], [], remaining)
        if not ready:
            return True
        try:
            data = os.read(self._master, 65536)
        except OSError as exc:
            if exc.errno == errno.EIO:  # every slave end closed: ssh is gone
                return False
            raise
        if not data:
            return False
        self.transcript += data
        return True

    def wait_for(self, text: str, timeout: float = DEFAULT_VIEWER_TIMEOUT) -> bool:
        """Read the terminal until ``text`` appears (raw or with escapes stripped)."""
        if self._master < 0:
            raise HarnessError("viewer is not open")
        deadline = time.monotonic() + timeout
        needle = text.encode()
        while True:
            if needle in self.transcript or text in self.text():
                return True
            if time.monotonic() >= deadline or not self._pump(deadline):
                return needle in self.transcript or text in self.text()

    def wait_attached(self, timeout: float = DEFAULT_VIEWER_TIMEOUT) -> None:
        """Wait until the viewer drew something (the session's screen); raise if not."""
        deadline = time.monotonic() + timeout
        while not self.transcript:
            if time.monotonic() >= deadline or not self._pump(deadline):
                break
        if not self.transcript:
            raise self.error(f"ssh viewer got no output within {timeout:g}s")

    def error(self, message: str) -> HarnessError:
        stderr = _read_text(self._stderr) if self._stderr is not None else ""
        code = self._process.poll() if self._process is not None else None
        screen = _tail(self.text())
        return self.session.error(
            f"{message} (ssh exit status {code}); viewer screen:\n{screen}",
            output=stderr,
        )


_ANSI_RE = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()][0-9A-Za-z]|.)"
)


def strip_ansi(text: str) -> str:
    """Remove CSI/OSC/charset escape sequences and carriage returns."""
    return _ANSI_RE.sub("", text).replace("\r", "")


def viewer_sees(
    session: Session,
    expected: str = "MARKER-42",
    *,
    command: str = "echo MARKER-$((6*7))",
    timeout: float = DEFAULT_VIEWER_TIMEOUT,
) -> bool:
    """Attach a viewer over ssh, run ``command`` in the session, look for ``expected``.

    The command is typed with ``send-keys`` after the viewer has drawn the screen, so a
    match proves the viewer sees what *ran* in the session: ``expected`` (MARKER-42) is
    not in the keystrokes (``MARKER-$((6*7))``), only in the shell's output.  Raises
    :class:`HarnessError` if the viewer cannot attach; returns False if it attached but
    never showed ``expected``.
    """
    if expected in command:
        raise ValueError("expected text must not occur in the typed command")
    with Viewer(session) as viewer:
        viewer.wait_attached(timeout)
        session.leave_modes()
        session.send_keys(command, "Enter")
        return viewer.wait_for(expected, timeout)


# ----------------------------------------------------------------------- log checking

_BIND_KEY_CMD = re.compile(r"Local cmd: bind-key(?P<rest>.*)$")
_BIND_FLAGS = re.compile(r"-[cnr]+")
_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_COMMAND_WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")
_KEY_NAME = re.compile(
    r"""(?:[CMS]-)*(?:
        [!-~]                                          # one printable ASCII character
      | \\\\                                         # backslash, as vis writes it
      | \^[!-~]                                        # ^X, control key
      | F(?:[1-9]|1[0-2]) | IC | DC | Home | End | NPage | PageDown | PgDn
      | PPage | PageUp | PgUp | Tab | BTab | Space | BSpace | Enter | Escape
      | Up | Down | Left | Right | KP(?:[/*.+0-9-]|Enter)
      | (?:Mouse(?:Down|Up|Drag|DragEnd)[1-3] | WheelUp | WheelDown)(?:Pane|Status|Border)?
      | [^\x00-\x7f]                                   # one non-ASCII (UTF-8) key
    )""",
    re.VERBOSE,
)
# vis(3) escapes the server's logger writes for unprintable bytes (VIS_OCTAL|VIS_CSTYLE):
# \ooo, \a \b \f \n \r \t \v \0 \s, \M-x, \^x.  Only an escaped backslash is benign.
_VIS_ESCAPE = re.compile(r"\\(?:\\|[0-7]{1,3}|[abfnrtvs]|M[-^]|\^)")


def _bad_chars(line: str) -> bool:
    if any(not ch.isprintable() for ch in line):  # raw control bytes, DEL, C1, ...
        return True
    if "\ufffd" in line:  # undecodable bytes
        return True
    return any(m.group() != "\\\\" for m in _VIS_ESCAPE.finditer(line))


def _bind_key_args_ok(rest: str) -> bool:
    """Check ``[-cnr] [-t T] [-T T] key command ...`` as args_print() writes it."""
    if not rest.startswith(" "):
        return False  # "bind-keyX..." or nothing at all
    tokens = rest[1:].split(" ")
    i = 0
    while i < len(tokens) and tokens[i].startswith("-"):
        tok = tokens[i]
        if tok in ("-t", "-T"):
            if i + 1 >= len(tokens) or not _TABLE_NAME.fullmatch(tokens[i + 1]):
                return False
            i += 2
        elif _BIND_FLAGS.fullmatch(tok):
            i += 1
        else:
            break  # '-' itself is a key; anything else is checked as a key below
    if len(tokens) - i < 2:
        return False
    return bool(_KEY_NAME.fullmatch(tokens[i]) and _COMMAND_WORD.fullmatch(tokens[i + 1]))


def garbage_bind_key_lines(log_text: str) -> list[str]:
    """Lines of a ``tmate-ssh-server -v`` log that show a corrupted ``bind-key``.

    What a healthy log contains: when a tmate client connects, its default key table
    is replayed to the server's session daemon, and the daemon logs each command it
    executes as ``[TOKE...] Local cmd: <cmd_print()>``.  That gives ~80 lines such as::

        [47ND...] Local cmd: bind-key C-b send-prefix
        [47ND...] Local cmd: bind-key " split-window
        [47ND...] Local cmd: bind-key -r M-Up resize-pane -U 5
        [47ND...] Local cmd: bind-key -n MouseDown1Pane select-pane -t=; send-keys -M

    The text after ``bind-key`` is produced by ``args_print()`` from what
    ``args_parse()`` (i.e. getopt) made of the client's argv, so a getopt fault shows
    up exactly there: flags lost or invented, an option value read from a stale
    ``optarg`` (random bytes), arguments shifted so the key or the command name is
    nonsense.  Two independent checks, each of which passes on the healthy log:

    1. Byte level, for every line mentioning ``bind-key``: the logger runs messages
       through ``stravis(VIS_OCTAL|VIS_CSTYLE|VIS_TAB|VIS_NL)``, so unprintable bytes
       appear as ``\\ooo``/``\\n``/``\\M-x`` escapes; a build whose vis differs could
       also write them raw.  Any raw unprintable character, U+FFFD, or vis escape
       other than ``\\\\`` (an escaped backslash, which a user's ``bind-key \\`` could
       produce) is garbage.  Healthy lines are plain printable ASCII.
    2. Shape, for every ``Local cmd: bind-key`` line: optional ``-cnr`` flag clusters
       and ``-t``/``-T`` with a table name, then a real tmux key name (one printable
       character, ``C-``/``M-``/``S-`` modified names, ``F1``..``F12``, ``Up``,
       ``MouseDown1Pane``, ...), then a command word (lower-case words joined by
       ``-``).  Unknown flags, an unknown key or a non-word command are garbage.

    A bind-key that getopt rejected outright is logged as ``parse error: usage:
    bind-key ...``; such lines mention ``bind-key`` too and are reported as well, as
    is any ``Local cmd: bind-key`` whose parse failed ("parse error" never appears
    in a healthy log).  The check deliberately does not require a fixed number of
    bind-key lines: that depends on the client's version and configuration.
    """
    bad: list[str] = []
    for line in log_text.splitlines():
        if "bind-key" not in line:
            continue
        if _bad_chars(line) or "parse error" in line or "usage:" in line:
            bad.append(line)
            continue
        match = _BIND_KEY_CMD.search(line)
        if match is not None and not _bind_key_args_ok(match["rest"]):
            bad.append(line)
    return bad

"""Servers the tests start for themselves: a PostgreSQL cluster and Ray nodes.

Each listens where it is told (127.0.0.1, or a test host's address inside its network
namespace, see :mod:`spotpatch.testing._hosts`), lives in a temporary folder of its own and is
stopped by the test that started it. A server that cannot start raises :class:`ServerError`
with the reason in one line.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["PostgresServer", "RayNode", "ServerError", "free_port", "processes_naming"]


class ServerError(RuntimeError):
    """A test server could not start (its reason in one line)."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_naming(text: str) -> list[int]:
    """This machine's processes whose command line holds ``text``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if text.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
    return found


def study_lock_free(storage, study_name: str) -> bool:
    """Whether no process holds ``study_name``'s lock in a PostgreSQL storage (its advisory
    lock, which a driver holds while it asks for a trial): a test that stops a driver checks
    it stopped past the lock, else every other driver would wait on it."""
    import sqlalchemy

    from spotpatch.search._heartbeat import database_lock_key

    key = {"key": database_lock_key(study_name)}
    with storage.engine.connect() as conn:
        free = conn.execute(sqlalchemy.text("SELECT pg_try_advisory_lock(:key)"), key).scalar()
        if free:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), key)
    return bool(free)


def _server_binary(name: str) -> str:
    """A PostgreSQL server program: on PATH, else the newest of Debian's versioned folders."""
    found = shutil.which(name)
    if found:
        return found
    candidates = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
    if not candidates:
        raise ServerError(
            f"PostgreSQL's {name} is not installed (neither on PATH nor in "
            "/usr/lib/postgresql/*/bin): `make test` installs Debian's postgresql package, or "
            "run `apt-get install postgresql`"
        )
    return max(candidates, key=lambda p: int(Path(p).parts[-3].split(".")[0]))


class PostgresServer:
    """A PostgreSQL cluster in a temporary folder, owned by an unprivileged user (as root it
    runs as ``postgres``: the server refuses root).

    Args:
        address: where it listens.
        prefix: a command that runs what follows it elsewhere (a test host's
            ``ip netns exec NS``); the server then listens on ``address`` there.
        clients: a CIDR block whose clients may log in over TCP besides the local ones.
        port: its port; None: a free one of 127.0.0.1.

    The test process itself always reaches it through :meth:`socket_url` (a Unix socket in the
    server's folder, which no network namespace hides).
    """

    def __init__(
        self,
        address: str = "127.0.0.1",
        *,
        prefix: Sequence[str] = (),
        clients: str | None = None,
        port: int | None = None,
    ) -> None:
        self.initdb = _server_binary("initdb")
        self.pg_ctl = _server_binary("pg_ctl")
        self.address, self.prefix, self.clients = address, list(prefix), clients
        self.as_user: list[str] = []
        self.owner: tuple[int, int] | None = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise ServerError(
                    "the tests run as root and PostgreSQL refuses root: they need the "
                    "`postgres` user that Debian's postgresql package creates"
                ) from None
            self.owner = (owner.pw_uid, owner.pw_gid)
            self.as_user = ["setpriv", f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}"]
            self.as_user += ["--clear-groups", "--"]
        self.root = Path(tempfile.mkdtemp(prefix="spotpatch-pg-"))
        if self.owner:
            os.chown(self.root, *self.owner)
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.password = secrets.token_hex(12)
        self.port = port or 0
        self._fixed_port = port is not None

    def _run(self, *cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.prefix, *self.as_user, *cmd],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.root,
        )

    def start(self) -> None:
        pwfile = self.root / "password"
        pwfile.write_text(self.password)
        if self.owner:
            os.chown(pwfile, *self.owner)
        done = self._run(
            self.initdb, "-D", str(self.data), "-U", "spotpatch", f"--pwfile={pwfile}",
            "--auth=scram-sha-256", "--locale=C", "--encoding=UTF8", "--no-sync",
        )  # fmt: skip
        pwfile.unlink()
        if done.returncode:
            raise ServerError(f"initdb failed: {done.stderr.strip()[-2000:]}")
        if self.clients:
            with open(self.data / "pg_hba.conf", "a") as hba:
                hba.write(f"host all all {self.clients} scram-sha-256\n")
        for _ in range(1 if self._fixed_port else 3):  # a free port may be taken meanwhile
            self.port = self.port if self._fixed_port else free_port()
            options = (
                f"-c listen_addresses={self.address} -p {self.port} -k {self.root} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            done = self._run(
                self.pg_ctl, "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                "-o", options, "start",
            )  # fmt: skip
            if done.returncode == 0:
                return
        log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        raise ServerError(f"the PostgreSQL server did not start: {done.stderr.strip()} {log}")

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():  # its data goes: no need to save it
                self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        """The database's URL over TCP, at the server's address."""
        return f"postgresql://spotpatch:{self.password}@{self.address}:{self.port}/{database}"

    def socket_url(self, database: str) -> str:
        """The database's URL through the server's Unix socket (this machine only)."""
        return (
            f"postgresql://spotpatch:{self.password}@/{database}?host={self.root}&port={self.port}"
        )

    def create_database(self, name: str) -> str:
        """Create database ``name``; returns its URL over TCP."""
        import psycopg

        with psycopg.connect(self.socket_url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def ray_program() -> str:
    """The ``ray`` command of this Python's environment."""
    return str(Path(sys.executable).with_name("ray"))


class RayNode:
    """A Ray node started as a user starts one (``ray start --block``): the head, or a node
    that joins ``head_address``; stopped with :meth:`stop`, and only it.

    Args:
        address: the node's own IP address.
        cpus: CPUs it offers trials.
        head_address: ``HOST:PORT`` of the head to join; None: this node is a head (at ``port``).
        prefix: a command that runs what follows it elsewhere (a test host's).
        env: environment variables for the node (Ray's settings).

    Ray's socket paths must fit in 107 characters: each node has a short folder of its own
    (``RAY_TMPDIR``), not pytest's.
    """

    def __init__(
        self,
        address: str,
        *,
        cpus: int,
        head_address: str | None = None,
        port: int | None = None,
        prefix: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.address, self.head_address = address, head_address
        self.port = port or free_port()
        self.folder = tempfile.mkdtemp(prefix="spr-")
        self.env = {**os.environ, **(env or {}), "RAY_TMPDIR": self.folder}
        where = ["--head", "--port", str(self.port)]
        if head_address:
            where = ["--address", head_address]
        self.command = [
            *prefix,
            ray_program(),
            "start",
            *where,
            *("--node-ip-address", address, "--num-cpus", str(cpus)),
            # Ports of its own, so that another Ray on this machine does not collide with it.
            *("--dashboard-agent-listen-port", str(free_port())),
            *("--dashboard-agent-grpc-port", str(free_port())),
            *("--runtime-env-agent-port", str(free_port())),
            *("--metrics-export-port", str(free_port())),
            *("--disable-usage-stats", "--block"),
        ]
        if not head_address:
            self.command.insert(self.command.index("--num-cpus"), "--include-dashboard=false")
        self.proc: subprocess.Popen | None = None

    @property
    def log(self) -> Path:
        return Path(self.folder) / "ray-start.log"

    def start(self, timeout: float = 120) -> None:
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                self.command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        started = "Ray runtime started"
        while started not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None:
                raise ServerError(f"ray start failed: {self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise ServerError(f"ray start did not finish in {timeout:.0f} s")
            time.sleep(0.5)

    def stop(self) -> None:
        """Stop this node (`ray stop` would stop every Ray of this machine): `ray start
        --block` ends what it started on SIGTERM; whatever is left of the node (its processes
        name its folder) is killed, and the folder removed."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in processes_naming(self.folder):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.folder, ignore_errors=True)

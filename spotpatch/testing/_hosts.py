"""Several "hosts" on one Linux machine: network namespaces joined by veth pairs.

Each host is a network namespace of its own with one address on a veth pair, and a host name
of its own (every command runs in a new UTS namespace named after it), so that nothing it runs
reaches another host through a loopback shortcut or mistakes another host's processes for its
own. The file system is shared, as an NFS mount would be. Hosts are made as root with
``ip netns``; :func:`namespaces_problem` says why they cannot be, where they cannot.

Example:
    >>> with TestHosts(["a", "b"]) as hosts:  # doctest: +SKIP
    ...     a, b = hosts["a"], hosts["b"]
    ...     b.run(["python", "-c", "..."])  # runs on host b, reaching a at a.address
    ...     hosts.cut()  # the network between them goes down...
    ...     hosts.restore()  # ...and comes back
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from spotpatch.search import process_alive

__all__ = ["TestHost", "TestHosts", "namespaces_problem"]

_SUBNET = "10.77.0"  # lives only on the veth pairs inside the hosts' own namespaces


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def namespaces_problem() -> str | None:
    """Why network namespaces cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    for program in ("ip", "unshare"):
        if shutil.which(program) is None:
            return f"no `{program}` program (iproute2 / util-linux)"
    probe = f"spprobe{os.getpid()}"
    done = _ip("netns", "add", probe, check=False)
    if done.returncode:
        return f"ip netns add failed: {done.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


class TestHost:
    """One host: its namespace, address, host name and a folder of its own (its temporary
    folder and working directory)."""

    __test__ = False  # not a pytest class

    def __init__(self, name: str, netns: str, address: str, folder: Path):
        self.name, self.netns, self.address, self.folder = name, netns, address, folder
        (folder / "tmp").mkdir(parents=True, exist_ok=True)

    @property
    def prefix(self) -> list[str]:
        """A command that runs what follows it on this host (its network, its host name)."""
        rename = 'hostname "$0" && exec "$@"'
        return ["ip", "netns", "exec", self.netns, "unshare", "--uts", "--", "sh", "-c", rename,
                self.name]  # fmt: skip

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**os.environ, "TMPDIR": str(self.folder / "tmp"), **(extra or {})}

    def popen(
        self, argv: Sequence[str], *, log: str, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen:
        """Start ``argv`` on this host in a session of its own; its output goes to ``log`` in
        the host's folder."""
        with open(self.folder / log, "w") as out:
            return subprocess.Popen(
                [*self.prefix, *argv],
                cwd=self.folder,
                env=self.env(env),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 120,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess:
        """Run ``argv`` on this host to its end (at most ``timeout`` seconds)."""
        return subprocess.run(
            [*self.prefix, *argv],
            cwd=self.folder,
            env=self.env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def pids(self) -> list[int]:
        """Every process running on this host."""
        return _netns_pids(self.netns)

    def kill_all(self) -> int:
        """Kill every process of this host at once (the host is lost); returns how many there
        were."""
        return _kill_all(self.netns, self.name)


def _netns_pids(netns: str) -> list[int]:
    return [int(p) for p in _ip("netns", "pids", netns, check=False).stdout.split()]


def _kill_all(netns: str, name: str, timeout: float = 30) -> int:
    """Kill every process of a namespace; waits (at most ``timeout`` seconds) until none is
    left. Returns how many there were."""
    first = _netns_pids(netns)
    deadline = time.monotonic() + timeout
    while pids := _netns_pids(netns):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise RuntimeError(f"host {name}: processes {pids} outlived SIGKILL")
        time.sleep(0.1)
    return len(first)


class TestHosts:
    """Hosts joined by veth pairs to the first one (a star: every other host reaches the first
    directly; with two, one link). A context manager: leaving it kills every process of every
    host and removes the namespaces and their links, also when the test failed.

    Args:
        names: the hosts' names; the first is the hub.
        folder: where the hosts' folders go (default: a temporary folder, removed at the end).
    """

    __test__ = False

    def __init__(self, names: Sequence[str], folder: Path | None = None):
        if len(names) < 2 or len(set(names)) != len(names):
            raise ValueError("hosts need two or more distinct names")
        if not all(re.fullmatch(r"[a-z]{1,4}", name) for name in names):
            raise ValueError("host names are 1-4 lowercase letters (they name network devices)")
        self._own_folder = folder is None
        self.folder = Path(folder or tempfile.mkdtemp(prefix="spotpatch-hosts-"))
        tag = str(os.getpid())
        self.hosts: dict[str, TestHost] = {}
        self.links: list[tuple[str, str, str, str]] = []  # (netns, dev) of each end
        for i, name in enumerate(names):
            netns = f"sp{tag}{name}"
            address = f"{_SUBNET}.{i + 1}"
            self.hosts[name] = TestHost(name, netns, address, self.folder / name)
        self._made: list[str] = []

    #: The hosts' addresses, as a CIDR block.
    network = f"{_SUBNET}.0/24"

    def __getitem__(self, name: str) -> TestHost:
        return self.hosts[name]

    def __enter__(self) -> TestHosts:
        try:
            self._make()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    @staticmethod
    def _sweep() -> None:
        """Remove the hosts of earlier test runs whose process is gone (killed before it could
        remove them): their processes killed, their namespaces deleted."""
        listed = _ip("netns", "list", check=False).stdout.split("\n")
        for name in (line.split()[0] for line in listed if line.strip()):
            match = re.fullmatch(r"sp(\d+)[a-z]\w*", name)
            if match and not process_alive(int(match.group(1))):
                _kill_all(name, name)
                _ip("netns", "del", name, check=False)

    def _make(self) -> None:
        self._sweep()
        hub, *others = self.hosts.values()
        for host in self.hosts.values():
            _ip("netns", "add", host.netns)
            self._made.append(host.netns)
            _ip("-n", host.netns, "link", "set", "lo", "up")
        for i, other in enumerate(others):
            hub_dev, other_dev = f"{hub.netns}-{i}"[:15], f"{other.netns}-h"[:15]
            # Made in the hub's namespace, so no link ever exists in this machine's own.
            _ip("-n", hub.netns, "link", "add", hub_dev, "type", "veth", "peer", "name",
                other_dev, "netns", other.netns)  # fmt: skip
            self.links.append((hub.netns, hub_dev, other.netns, other_dev))
            _ip("-n", other.netns, "addr", "add", f"{other.address}/32", "dev", other_dev)
            _ip("-n", hub.netns, "addr", "add", f"{hub.address}/32", "dev", hub_dev)
            self._set(hub.netns, hub_dev, other.netns, other_dev, "up")
            _ip("-n", hub.netns, "route", "add", f"{other.address}/32", "dev", hub_dev)
            _ip("-n", other.netns, "route", "add", f"{hub.address}/32", "dev", other_dev)

    @staticmethod
    def _set(*ends_and_state: str) -> None:
        *ends, state = ends_and_state
        for netns, dev in zip(ends[::2], ends[1::2], strict=True):
            _ip("-n", netns, "link", "set", dev, state)

    def cut(self) -> None:
        """Take every link down: the hosts no longer reach each other (their connections stay
        open, waiting, as over a network that went away)."""
        for netns, dev, other_netns, other_dev in self.links:
            self._set(netns, dev, other_netns, other_dev, "down")

    def restore(self) -> None:
        """Bring every link up again, with the routes that went with it."""
        hub = next(iter(self.hosts.values()))
        for (netns, dev, other_netns, other_dev), other in zip(
            self.links, list(self.hosts.values())[1:], strict=True
        ):
            self._set(netns, dev, other_netns, other_dev, "up")
            _ip("-n", netns, "route", "replace", f"{other.address}/32", "dev", dev)
            _ip("-n", other_netns, "route", "replace", f"{hub.address}/32", "dev", other_dev)

    def remove(self) -> None:
        """Kill every process of every host, delete the namespaces (and so their links) and,
        if this object made it, the hosts' folder."""
        for host in self.hosts.values():
            if host.netns in self._made:
                with contextlib.suppress(RuntimeError):
                    host.kill_all()
        for netns in self._made:
            _ip("netns", "del", netns, check=False)
        self._made.clear()
        if self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

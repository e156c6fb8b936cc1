"""A PostgreSQL cluster of a test's own (initdb + pg_ctl on a free port under a temporary
directory), for tests that stop the database: never the shared server."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from processes import free_port


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def available() -> bool:
    """Whether initdb and pg_ctl are installed (and can run as a non-root user)."""
    if _bin_dir() is None:
        return False
    if os.geteuid() != 0:
        return True
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return False
    return shutil.which("runuser") is not None


@dataclass
class Cluster:
    """A running cluster; ``stop`` and ``start`` it as the test needs."""

    directory: Path
    port: int

    @property
    def url(self) -> str:
        """SQLAlchemy URL of its ``postgres`` database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, *args: str) -> None:
        log = self.directory / "server.log"
        _run("pg_ctl", "-D", str(self.directory / "data"), "-l", str(log), "-w", *args)

    def start(self) -> None:
        """Start it and wait until it accepts connections."""
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory}"
        self._pg_ctl("-o", options, "start")

    def stop(self) -> None:
        """Stop it the way an operator in a hurry would: fast shutdown, connections cut."""
        self._pg_ctl("-m", "fast", "stop")


def _run(tool: str, *args: str) -> None:
    bin_dir = _bin_dir()
    assert bin_dir is not None
    command = [str(bin_dir / tool), *args]
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, capture_output=True, timeout=60)


@contextmanager
def own_cluster() -> Iterator[Cluster]:
    """A fresh cluster (trust auth, user postgres), started; stopped and removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="modelserve-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    cluster = Cluster(directory, free_port())
    try:
        _run("initdb", "-D", str(directory / "data"), "-A", "trust", "-U", "postgres")
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)

"""A real PostgreSQL server (Debian's `postgresql` package) started by the tests themselves:
`initdb` into a temporary directory, listening on 127.0.0.1 only, on a free port, its unix
socket in that directory; stopped and removed at the end.

The server refuses to run as root: as root, the cluster belongs to an unprivileged account
(`postgres` if the package made it, else `nobody`) and its programs run under `runuser`. One
server serves a whole test session; each test gets a database of its own, copied from a
template that already has the collector's schema (CREATE DATABASE ... TEMPLATE is a file copy),
or an empty one.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from broker import free_port

SUPERUSER = "linerec"


def postgres_bin(name: str) -> str:
    """Debian keeps the server's programs under /usr/lib/postgresql/<major>/bin (the newest
    installed major first); PATH may have them too."""
    for found in sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True):
        return found
    on_path = shutil.which(name)
    assert on_path, f"{name} not found: .ci/setup installs Debian's postgresql package"
    return on_path


class PostgresServer:
    def __init__(self, settings: str = "") -> None:
        self.settings = settings  # more `-c name=value` for the server (a bench's memory)
        self.root = Path(tempfile.mkdtemp(prefix="linerec-pg-"))  # not under a 0700 tmp_path
        self.data = self.root / "data"
        self.port = free_port()
        self.owner: str | None = None
        if os.geteuid() == 0:
            names = {entry.pw_name for entry in pwd.getpwall()}
            self.owner = "postgres" if "postgres" in names else "nobody"
            account = pwd.getpwnam(self.owner)
            os.chown(self.root, account.pw_uid, account.pw_gid)
        self._names = itertools.count(1)
        self.template = ""

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", self.owner, "--"] if self.owner else []
        done = subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{command[0]}: {done.stdout}{done.stderr}"

    def start(self) -> PostgresServer:
        self._run(
            postgres_bin("initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        self._serve()
        self.template = self.create(schema=False, name="linerec_template")
        from linerec.collector.database import connect
        from linerec.collector.schema import migrate

        db = connect(self.template)
        migrate(db)
        db.close()
        return self

    def _serve(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.root} -c max_connections=200 "
            # a test server: what is lost in a crash is recreated by the next run
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            f"{self.settings}"
        )
        self._run(
            postgres_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip

    def pause(self) -> None:
        """Stop the server (its clients' connections break); `resume` starts it again on the
        same port with the same data."""
        self._run(postgres_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        self._serve()

    def uri(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        with psycopg.connect(self.uri("postgres"), autocommit=True) as connection:
            connection.execute(sql)  # type: ignore[arg-type]

    def create(self, *, schema: bool = True, name: str | None = None) -> str:
        """A new database's URI: with the collector's schema, or empty."""
        name = name or f"test_{next(self._names)}"
        template = "linerec_template" if schema else "template0"
        self.admin(f"CREATE DATABASE {name} TEMPLATE {template}")
        return self.uri(name)

    def drop(self, uri: str) -> None:
        name = uri.rpartition("/")[2]
        self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        if self.data.exists():
            self._run(postgres_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

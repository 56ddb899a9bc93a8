from __future__ import annotations

import os
import pwd
import shutil
import signal
import stat
import struct
import subprocess
from pathlib import Path
from typing import ClassVar

from tessera.core import ConfigError
from tessera.core.embedded._binaries import find_binary
from tessera.core.embedded._probes import exchange
from tessera.core.embedded._server import Account, EmbeddedServer, spawn

_SUPERUSER = "postgres"
_DATABASE = "postgres"
_PROTOCOL_3_0 = 196608
_INITDB_TIMEOUT = 120.0
# Tried in order when running as root: Debian's postgres account, then the account every Unix has.
_UNPRIVILEGED_ACCOUNTS = ("postgres", "nobody")


class PostgresServer(EmbeddedServer):
    """A PostgreSQL server with trust authentication, ready once it accepts a login.

    On first start ``initdb`` creates the cluster in ``data_dir/pgdata`` (superuser
    ``postgres``); it listens on ``host:port`` and on a Unix socket in that same directory. Data
    survives :meth:`kill` and :meth:`restart`: a commit is written to the operating system before
    it returns. fsync is off, so only a machine crash could lose data.

    PostgreSQL refuses to run as root. When the caller is root the server runs as ``os_user``
    (default: the ``postgres`` account, else ``nobody``): ``pgdata`` is given to that account, and
    ``data_dir`` is made searchable (not listable) by it, so every folder above ``data_dir`` must
    already be searchable by it, as ``tempfile.mkdtemp()`` folders are.

    Args:
        data_dir: The directory the server owns.
        name: Names the server; also the log file's stem.
        port: The TCP port; a free one when None.
        host: The address it listens on.
        os_user: The account to run as when the caller is root; ignored otherwise.

    Raises:
        ConfigError: The caller is root and no unprivileged account (``os_user``, or the
            defaults) exists.

    """

    backend: ClassVar[str] = "postgres"
    stop_signal: ClassVar[signal.Signals] = signal.SIGINT  # "fast" shutdown: no waiting on clients

    def __init__(
        self,
        data_dir: Path | str,
        *,
        name: str = "postgres",
        port: int | None = None,
        host: str = "127.0.0.1",
        os_user: str | None = None,
    ) -> None:
        super().__init__(data_dir, name=name, port=port, host=host)
        self.pgdata = self.data_dir / "pgdata"
        self._os_account = _unprivileged_account(os_user) if os.geteuid() == 0 else None

    @property
    def dsn(self) -> str:
        """``postgresql://postgres@host:port/postgres``, for psycopg, asyncpg and psql."""
        return f"postgresql://{_SUPERUSER}@{self.host}:{self.port}/{_DATABASE}"

    def _account(self) -> Account | None:
        return self._os_account

    def _command(self) -> list[str]:
        return [
            str(find_binary("postgres")),
            "-D",
            str(self.pgdata),
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-k",
            str(self.pgdata),
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
            # Dynamic shared memory in files under the data directory, not /dev/shm: a server
            # that tests SIGKILL leaves its segments behind, and they go with the directory.
            "-c",
            "dynamic_shared_memory_type=mmap",
        ]

    def _prepare(self) -> None:
        account = self._os_account
        if account is not None:
            self.data_dir.chmod(self.data_dir.stat().st_mode | stat.S_IXGRP | stat.S_IXOTH)
            _require_searchable(self.data_dir, account)
        if (self.pgdata / "PG_VERSION").exists():
            # Left behind by a kill; its pid may belong to another process by now, which
            # postgres would take for a live server of this data directory.
            (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
            return
        self._initdb(account)

    def _initdb(self, account: Account | None) -> None:
        # initdb refuses a non-empty directory, such as one a failed initdb left behind.
        shutil.rmtree(self.pgdata, ignore_errors=True)
        self.pgdata.mkdir(mode=0o700)
        if account is not None:
            os.chown(self.pgdata, account.uid, account.gid)
        # The initdb beside the chosen postgres, so both come from the same release.
        postgres = find_binary("postgres").resolve()
        initdb = postgres.parent / "initdb"
        command = [
            str(initdb if initdb.is_file() else find_binary("initdb")),
            f"--pgdata={self.pgdata}",
            f"--username={_SUPERUSER}",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        ]
        process = spawn(command, self.log_path, account=account)
        try:
            code = process.wait(_INITDB_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise self._start_error(f"initdb did not finish within {_INITDB_TIMEOUT:g} s") from None
        if code != 0:
            raise self._start_error(f"initdb exited with code {code}")

    def _answers(self, timeout: float) -> bool:
        # A login as the superuser, as pg_isready does: while starting up, postgres answers
        # with an ErrorResponse ("E"); once ready, with AuthenticationOk ("R", code 0).
        answer = exchange(self.host, self.port, _login_then_terminate(), timeout)
        return answer[:1] == b"R" and answer[5:9] == b"\0\0\0\0"


def _login_then_terminate() -> bytes:
    parameters = f"user\0{_SUPERUSER}\0database\0{_DATABASE}\0\0".encode()
    startup = struct.pack("!ii", 8 + len(parameters), _PROTOCOL_3_0) + parameters
    terminate = b"X" + struct.pack("!i", 4)
    return startup + terminate


def _unprivileged_account(os_user: str | None) -> Account:
    candidates = (os_user,) if os_user else _UNPRIVILEGED_ACCOUNTS
    for candidate in candidates:
        try:
            entry = pwd.getpwnam(candidate)
        except KeyError:
            continue
        return Account(candidate, entry.pw_uid, entry.pw_gid)
    raise ConfigError(
        f"PostgreSQL refuses to run as root and none of the accounts {', '.join(candidates)} "
        "exists; create one or pass os_user"
    )


def _require_searchable(directory: Path, account: Account) -> None:
    for folder in directory.resolve().parents:
        mode = folder.stat()
        if mode.st_uid == account.uid:
            searchable = mode.st_mode & stat.S_IXUSR
        elif mode.st_gid == account.gid:
            searchable = mode.st_mode & stat.S_IXGRP
        else:
            searchable = mode.st_mode & stat.S_IXOTH
        if not searchable:
            raise ConfigError(
                f"PostgreSQL runs as {account.name} here (the caller is root), and {account.name} "
                f"cannot reach {directory}: {folder} is not searchable by it. Put the data "
                "directory under one that other accounts can traverse, e.g. tempfile.mkdtemp()."
            )

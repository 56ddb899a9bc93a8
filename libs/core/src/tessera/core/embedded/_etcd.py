from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any, ClassVar, Self

from tessera.core.embedded._binaries import find_binary
from tessera.core.embedded._errors import ServerStartError
from tessera.core.embedded._lifecycle import StartStop
from tessera.core.embedded._ports import free_ports
from tessera.core.embedded._server import EmbeddedServer

# Loopback only: a configured HTTP proxy must never see these requests.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_STATUS_TIMEOUT = 1.0


class EtcdServer(EmbeddedServer):
    """One etcd member: alone by default, or part of an :class:`EtcdCluster`.

    Data lives in ``data_dir/data`` and survives :meth:`restart` and :meth:`kill`. It runs with
    ``--unsafe-no-fsync``: a crash of the process loses nothing (the page cache keeps it), only a
    crash of the machine could, which is the right trade for dev and test servers. Ready means
    its ``/health`` endpoint reports healthy, which needs an elected leader.

    Args:
        data_dir: The directory the member owns.
        name: The member name, also the log file's stem.
        port: The client port; a free one when None.
        peer_port: The peer (raft) port; a free one when None.
        host: The address both ports listen on.
        initial_cluster: etcd's ``--initial-cluster`` (``name=peer_url,...``); None for a
            single-member cluster.
        cluster_token: etcd's ``--initial-cluster-token``; members of one cluster share it.

    """

    backend: ClassVar[str] = "etcd"

    def __init__(
        self,
        data_dir: Path | str,
        *,
        name: str = "etcd",
        port: int | None = None,
        peer_port: int | None = None,
        host: str = "127.0.0.1",
        initial_cluster: str | None = None,
        cluster_token: str = "tessera",
    ) -> None:
        if port is None or peer_port is None:
            free_client, free_peer = free_ports(2, host)
            port = free_client if port is None else port
            peer_port = free_peer if peer_port is None else peer_port
        super().__init__(data_dir, name=name, port=port, host=host)
        self.peer_port = peer_port
        self._initial_cluster = initial_cluster or f"{name}={self.peer_url}"
        self._cluster_token = cluster_token

    @property
    def endpoint(self) -> str:
        """``host:port`` of the client API, the form aetcd and the Tessera settings take."""
        return f"{self.host}:{self.port}"

    @property
    def client_url(self) -> str:
        """``http://host:port`` of the client API."""
        return f"http://{self.endpoint}"

    @property
    def peer_url(self) -> str:
        """``http://host:peer_port`` that the other members talk raft to."""
        return f"http://{self.host}:{self.peer_port}"

    def status(self, timeout: float = _STATUS_TIMEOUT) -> dict[str, Any]:
        """Return the member's maintenance status (etcd's JSON gateway, ids as strings).

        Args:
            timeout: Seconds to wait for the answer.

        Raises:
            OSError: The member did not answer (stopped, paused, or partitioned).

        """
        request = urllib.request.Request(
            f"{self.client_url}/v3/maintenance/status", data=b"{}", method="POST"
        )
        with _DIRECT.open(request, timeout=timeout) as response:
            status: dict[str, Any] = json.load(response)
        return status

    def _command(self) -> list[str]:
        return [
            str(find_binary("etcd")),
            f"--name={self.name}",
            f"--data-dir={self.data_dir / 'data'}",
            f"--listen-client-urls={self.client_url}",
            f"--advertise-client-urls={self.client_url}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster={self._initial_cluster}",
            f"--initial-cluster-token={self._cluster_token}",
            # Ignored once the data directory exists, so restarts rejoin as the same member.
            "--initial-cluster-state=new",
            "--unsafe-no-fsync",
        ]

    def _ports(self) -> list[int]:
        return [self.port, self.peer_port]

    def _answers(self, timeout: float) -> bool:
        try:
            with _DIRECT.open(f"{self.client_url}/health", timeout=timeout) as response:
                health = json.load(response)
        except (OSError, ValueError):
            return False
        return isinstance(health, dict) and health.get("health") == "true"


class EtcdCluster(StartStop):
    """A cluster of etcd members on local ports, each a full :class:`EtcdServer`.

    Members have distinct client and peer ports and their own directories under ``base_dir``;
    fault tests stop, kill, pause and restart them one by one through :attr:`members`.

    Args:
        base_dir: Parent of the members' data directories.
        size: Number of members (3 or 5 for a cluster that survives failures).
        host: The address every member listens on.
        ports: The ``(client, peer)`` ports of each member, for a cluster on known ports (the dev
            stack's); its length is the size. None picks free ports for ``size`` members.

    Attributes:
        members: The members, in order ``etcd-0``, ``etcd-1``, ...

    Raises:
        ValueError: ``ports`` is given and its length is not ``size``.

    """

    def __init__(
        self,
        base_dir: Path | str,
        size: int = 3,
        *,
        host: str = "127.0.0.1",
        ports: Sequence[tuple[int, int]] | None = None,
    ) -> None:
        if ports is None:
            chosen = free_ports(2 * size, host)
            client_ports, peer_ports = chosen[:size], chosen[size:]
        elif len(ports) != size:
            raise ValueError(f"{len(ports)} port pairs for {size} members")
        else:
            client_ports = [client for client, _ in ports]
            peer_ports = [peer for _, peer in ports]
        names = [f"etcd-{index}" for index in range(size)]
        initial_cluster = ",".join(
            f"{name}=http://{host}:{peer_port}"
            for name, peer_port in zip(names, peer_ports, strict=True)
        )
        token = f"tessera-{uuid.uuid4().hex[:12]}"
        self.members = [
            EtcdServer(
                Path(base_dir, name),
                name=name,
                port=client_port,
                peer_port=peer_port,
                host=host,
                initial_cluster=initial_cluster,
                cluster_token=token,
            )
            for name, client_port, peer_port in zip(names, client_ports, peer_ports, strict=True)
        ]

    @property
    def endpoints(self) -> list[str]:
        """Every member's ``host:port`` client endpoint, in member order."""
        return [member.endpoint for member in self.members]

    def start(self, timeout: float = 30.0) -> Self:
        """Launch every member, then wait until each reports healthy.

        All members launch before any wait, since none is healthy before a quorum has formed.

        Args:
            timeout: Seconds allowed for the whole cluster.

        Returns:
            The cluster itself.

        Raises:
            BinaryNotFoundError: etcd is not installed.
            ServerStartError: A member exited or the cluster did not become healthy in time; all
                members are stopped.

        """
        deadline = time.monotonic() + timeout
        try:
            for member in self.members:
                if not member.running:
                    member._launch()
            for member in self.members:
                member._wait_until_answering(deadline, timeout)
        except ServerStartError:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every member (see :meth:`EmbeddedServer.stop`), the leader last.

        Args:
            timeout: Seconds to wait for the members' clean exit before killing them.

        """
        # Followers together, since each lingers about a second on its peer connections; the
        # leader last, since a leader that stops hands leadership to a running follower first
        # and would wait seconds on one that is stopping too.
        leader = self.leader() if any(member.running for member in self.members) else None
        deadline = time.monotonic() + timeout
        for wave in ([m for m in self.members if m is not leader], [leader] if leader else []):
            for member in wave:
                member._request_stop()
            for member in wave:
                member._await_exit(deadline)

    def leader(self, timeout: float = _STATUS_TIMEOUT) -> EtcdServer | None:
        """Return the member that is raft leader, or None when no reachable member knows one.

        Args:
            timeout: Seconds to wait for each member's status.

        """
        reachable = []
        for member in self.members:
            if member.running and not member.paused:
                with suppress(OSError):
                    reachable.append((member, member.status(timeout)))
        leader_ids = {status.get("leader") for _, status in reachable} - {None, "0"}
        for member, status in reachable:
            if status["header"]["member_id"] in leader_ids:
                return member
        return None

    def __repr__(self) -> str:
        return f"<EtcdCluster {', '.join(self.endpoints)}>"

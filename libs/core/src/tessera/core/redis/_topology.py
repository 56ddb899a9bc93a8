from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from tessera.core._errors import ConfigError

#: `redis+sentinel://[user:password@]host:port,host:port/<master name>[/<db>]`: the Sentinels to
#: ask where the master of that name is. `rediss+sentinel://` speaks TLS to the Redis servers.
SENTINEL_SCHEMES = frozenset({"redis+sentinel", "rediss+sentinel"})
#: `redis+cluster://[user:password@]host:port,host:port`: any nodes of a Redis Cluster (the client
#: discovers the rest). `rediss+cluster://` speaks TLS.
CLUSTER_SCHEMES = frozenset({"redis+cluster", "rediss+cluster"})
_DEFAULT_SENTINEL_PORT = 26379
_DEFAULT_PORT = 6379

Kind = Literal["standalone", "sentinel", "cluster"]


@dataclass(frozen=True, slots=True)
class RedisTopology:
    """What a Redis URL names: one server, a Sentinel-managed master, or a cluster.

    Attributes:
        kind: `standalone` (`redis://`, `rediss://`, `unix://`), `sentinel` or `cluster`.
        url: The URL as given.
        nodes: `(host, port)` of each Sentinel or cluster node; empty for standalone.
        master_name: The Sentinel master name; empty otherwise.
        db: The database number (always 0 in a cluster).
        username: From the URL's user part, if any.
        password: From the URL's user part, if any.
        tls: Whether the Redis connections use TLS.

    """

    kind: Kind
    url: str
    nodes: tuple[tuple[str, int], ...] = ()
    master_name: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False


def parse_redis_url(url: str) -> RedisTopology:
    """Tell a standalone, Sentinel or Cluster Redis URL apart and read its parts.

    Raises:
        ConfigError: A Sentinel URL without a master name, a cluster URL with a database other
            than 0, or a node that is not `host:port`.

    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SENTINEL_SCHEMES | CLUSTER_SCHEMES:
        return RedisTopology("standalone", url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    default_port = _DEFAULT_SENTINEL_PORT if scheme in SENTINEL_SCHEMES else _DEFAULT_PORT
    nodes = tuple(_node(part, default_port, url) for part in hosts.split(",") if part)
    if not nodes:
        raise _bad(url, "names no host")
    path = [segment for segment in parts.path.split("/") if segment]
    topology = RedisTopology(
        "cluster",
        url,
        nodes,
        username=unquote(username) or None,
        password=unquote(password) or None,
        tls=scheme.startswith("rediss"),
    )
    if scheme in SENTINEL_SCHEMES:
        if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
            raise _bad(url, "needs the master name and optionally a database: /<master>[/<db>]")
        db = int(path[1]) if len(path) == 2 else 0
        return replace(topology, kind="sentinel", master_name=path[0], db=db)
    if path not in ([], ["0"]):
        raise _bad(url, "a Redis Cluster has database 0 only")
    return topology


def _node(text: str, default_port: int, url: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon:
        return text, default_port
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _bad(url, f"{text!r} is not host:port")
    return host, int(port)


def _bad(url: str, reason: str) -> ConfigError:
    # The URL may carry a password: name its scheme only.
    return ConfigError(f"Redis URL ({urlsplit(url).scheme}://...) {reason}", source="redis_url")


@dataclass(frozen=True, slots=True)
class CeleryBroker:
    """The broker URL and transport options Celery (kombu) needs for a Tessera Redis URL.

    Attributes:
        url: kombu's form: the URL itself, or `sentinel://host:port/db;sentinel://...`.
        transport_options: `{"master_name": ...}` for Sentinel, else empty.

    """

    url: str
    transport_options: dict[str, Any]


def celery_broker(url: str) -> CeleryBroker:
    """Translate a Tessera Redis URL into kombu's broker URL and transport options.

    kombu reaches a Sentinel-managed master through its `sentinel://` transport; it has no
    Redis Cluster transport, so a cluster cannot be the broker or result backend.

    Raises:
        ConfigError: The URL names a Redis Cluster, or is malformed.

    """
    topology = parse_redis_url(url)
    match topology.kind:
        case "standalone":
            return CeleryBroker(url, {})
        case "sentinel":
            credentials = ""
            if topology.password is not None:
                credentials = f"{topology.username or ''}:{topology.password}@"
            hosts = ";".join(
                f"sentinel://{credentials}{host}:{port}/{topology.db}"
                for host, port in topology.nodes
            )
            options: dict[str, Any] = {"master_name": topology.master_name}
            if topology.tls:
                options["sentinel_kwargs"] = {"ssl": True}
            return CeleryBroker(hosts, options)
        case "cluster":
            raise _bad(
                url,
                "names a Redis Cluster, which Celery cannot use as broker or result backend; "
                "give the jobs a standalone or Sentinel-managed Redis",
            )

"""REDIS_URL: its forms (one server, Sentinel, Cluster; TLS with `rediss`), parsed without I/O, and the one
factory that builds the redis-py asyncio client for it with a bounded connection pool.

Forms accepted:
- `redis://[[user]:password@]host[:port][/db]`, `rediss://…` (TLS), `unix:///path/to/redis.sock[?db=N]`;
- `redis+sentinel://[[user]:password@]host1:26379[,host2:26379…]/<master-name>[/<db>]` (`rediss+sentinel` for TLS
  to the master and its replicas);
- `redis+cluster://[[user]:password@]host1:6379[,host2:6379…]` (`rediss+cluster` for TLS; a cluster has only db 0).

TLS (every `rediss` form; for Sentinel, to the Sentinels too) always verifies the server's certificate and its host
name: against the system's CAs (right for ElastiCache, whose certificates are public), or against the CA file given by
`?ssl_ca_certs=/path/ca.pem`; `&ssl_certfile=…&ssl_keyfile=…` add a client certificate (mutual TLS). These files are
read here, so that a wrong path or a file that is not PEM stops start-up; nothing else is: no network I/O.

Errors name the variable and the fix and never repeat the password.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, TypedDict
from urllib.parse import parse_qsl, unquote

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError

Kind = Literal["server", "sentinel", "cluster"]
RedisClient: TypeAlias = aioredis.Redis | RedisCluster
"""The client build_redis_client makes: one server or Sentinel's master (Redis), or a Redis Cluster."""

SENTINEL_FORM = "redis+sentinel://[:password@]host1:26379,host2:26379/<master-name>/<db>"
CLUSTER_FORM = "redis+cluster://[:password@]host1:6379,host2:6379"
SERVER_FORM = "redis://[:password@]host:6379/0"

_SCHEMES: dict[str, tuple[Kind, bool]] = {
    "redis": ("server", False),
    "rediss": ("server", True),
    "unix": ("server", False),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
}
_DEFAULT_PORT: dict[Kind, int] = {"server": 6379, "sentinel": 26379, "cluster": 6379}
# The TLS options REDIS_URL may carry, as redis-py names them. `ssl_cert_reqs` and `ssl_check_hostname` may only
# keep verification on: turning it off would let anyone on the path read and change the bot's data; a self-signed
# server gets its CA named with ssl_ca_certs instead.
_TLS_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
_TLS_KEEP_ON = {"ssl_cert_reqs": ("required",), "ssl_check_hostname": ("true", "yes", "1", "y", "on")}
_TLS_OPTIONS = "ssl_ca_certs, ssl_certfile, ssl_keyfile"
_HOST = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9._-]+))(?::(?P<port>[^:]*))?$")

# Socket timeouts: longer than WAIT (`redis.wait_timeout` <= 2 s) and the 1 s XREADGROUP block, short enough
# that a hung Redis fails a background job in seconds; Slack's acknowledgements never wait on them (they have
# their own deadline, in commands/dispatch.py).
CONNECT_TIMEOUT_SECONDS = 2.0
SOCKET_TIMEOUT_SECONDS = 3.0
HEALTH_CHECK_SECONDS = 30


class RedisUrlError(ValueError):
    """REDIS_URL is malformed; the message says what is wrong and the form to use (without the password)."""


@dataclass(frozen=True)
class RedisTarget:
    """Where Redis is, as REDIS_URL says: the kind of deployment, its nodes, TLS and credentials."""

    kind: Kind
    tls: bool
    url: str = ""  # the `server` kind: the URL as given, which redis-py reads itself
    nodes: tuple[tuple[str, int], ...] = ()  # sentinels or cluster start-up nodes
    master: str = ""  # the Sentinel master (service) name
    db: int = 0
    username: str | None = None
    password: str | None = None
    ca_certs: str | None = None  # TLS: the CA file that signed the servers' certificates (else the system's CAs)
    certfile: str | None = None  # mutual TLS: the client certificate (PEM), and its key unless in the same file
    keyfile: str | None = None

    def __repr__(self) -> str:  # never show the password, in logs or tracebacks
        return (
            f"RedisTarget(kind={self.kind!r}, tls={self.tls}, nodes={self.nodes!r}, master={self.master!r}, "
            f"db={self.db}, ca_certs={self.ca_certs!r})"
        )

    def tls_options(self) -> dict[str, object]:
        """The redis-py connection arguments for TLS (none without it); verification stays redis-py's default, on."""
        if not self.tls:
            return {}
        return {"ssl": True, "ssl_ca_certs": self.ca_certs, "ssl_certfile": self.certfile, "ssl_keyfile": self.keyfile}


@dataclass(frozen=True)
class PoolOptions:
    """The connection pool: at most `max_connections` (per node for a cluster); a request finding them all busy
    waits up to `timeout` seconds for one rather than failing at once."""

    max_connections: int = 64
    timeout: float = 5.0


def parse_redis_url(url: str) -> RedisTarget:
    """Reads REDIS_URL; raises RedisUrlError saying what is wrong and the form to use."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise RedisUrlError(
            f"REDIS_URL: unknown scheme {scheme.lower()[:20]!r}; use {SERVER_FORM} (rediss:// for TLS), "
            f"{SENTINEL_FORM} or {CLUSTER_FORM}"
            if sep
            else f"REDIS_URL: not a URL; use {SERVER_FORM} (rediss:// for TLS), {SENTINEL_FORM} or {CLUSTER_FORM}"
        )
    kind, tls = _SCHEMES[scheme.lower()]
    if kind == "server":
        return _parse_server(url.strip(), scheme.lower(), rest, tls)
    form = SENTINEL_FORM if kind == "sentinel" else CLUSTER_FORM
    rest, _, query = rest.split("#", 1)[0].partition("?")
    files = _tls_query(query, tls, form, only_tls=True)
    credentials, at, location = rest.rpartition("@")
    username, password = _credentials(credentials) if at else (None, None)
    hosts, _, path = location.partition("/")
    nodes = tuple(_node(part, index, kind, form) for index, part in enumerate(hosts.split(","), start=1))
    parts = [p for p in path.split("/") if p] if path else []
    if kind == "cluster":
        if parts not in ([], ["0"]):
            raise RedisUrlError(f"REDIS_URL: a Redis Cluster has only database 0; drop the path; use {form}")
        return RedisTarget(kind, tls, nodes=nodes, username=username, password=password, **files)
    if not parts:
        raise RedisUrlError(f"REDIS_URL: the Sentinel master name is missing after the hosts; use {form}")
    if len(parts) > 2:
        raise RedisUrlError(f"REDIS_URL: too many parts after the hosts (want <master-name>/<db>); use {form}")
    master = unquote(parts[0])
    db = _db(parts[1] if len(parts) == 2 else "0", form)
    return RedisTarget(kind, tls, nodes=nodes, master=master, db=db, username=username, password=password, **files)


def _parse_server(url: str, scheme: str, rest: str, tls: bool) -> RedisTarget:
    if scheme == "unix":
        if not rest.startswith("/"):
            raise RedisUrlError("REDIS_URL: a unix socket URL needs an absolute path, e.g. unix:///run/redis.sock")
        _tls_query(rest.split("#", 1)[0].partition("?")[2], False, SERVER_FORM, only_tls=False)
        return RedisTarget("server", False, url=url)
    files = _tls_query(rest.split("#", 1)[0].partition("?")[2], tls, SERVER_FORM, only_tls=False)
    location = rest.split("?", 1)[0].split("#", 1)[0].rpartition("@")[2]
    hostport, _, path = location.partition("/")
    if not hostport:
        raise RedisUrlError(f"REDIS_URL: the host is missing; use {SERVER_FORM}")
    if "," in hostport:
        raise RedisUrlError(
            "REDIS_URL: several hosts need redis+sentinel:// or redis+cluster://; "
            f"use {SENTINEL_FORM} or {CLUSTER_FORM}"
        )
    host, port = _node(hostport, 1, "server", SERVER_FORM)
    db = _db(path.strip("/") or "0", SERVER_FORM)
    return RedisTarget("server", tls, url=url, nodes=((host, port),), db=db, **files)


class TlsFiles(TypedDict):
    """The TLS files REDIS_URL names, as RedisTarget's fields (None: not given)."""

    ca_certs: str | None
    certfile: str | None
    keyfile: str | None


def _tls_query(query: str, tls: bool, form: str, *, only_tls: bool) -> TlsFiles:
    """The TLS files the query names (checked to be readable PEM). With `only_tls` (Sentinel, Cluster: the client
    is built here) any other option is refused; one server's URL goes to redis-py whole, which reads its other
    options itself, so there only the `ssl_…` ones are checked (a misspelt one would fail at the first command)."""
    seen: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        shown = name[:40]
        if name in seen:
            raise RedisUrlError(f"REDIS_URL: the option {shown!r} is given twice; give it once")
        seen[name] = value
        if not name.startswith("ssl"):
            if only_tls:
                raise RedisUrlError(
                    f"REDIS_URL: unknown option {shown!r}; this form takes only the TLS options {_TLS_OPTIONS}, "
                    f"e.g. {form.replace('redis+', 'rediss+', 1)}?ssl_ca_certs=/etc/ssl/redis-ca.pem"
                )
            continue
        if name not in _TLS_FILES and name not in _TLS_KEEP_ON:
            raise RedisUrlError(
                f"REDIS_URL: unknown TLS option {shown!r}; use {_TLS_OPTIONS}, e.g. ?ssl_ca_certs=/etc/ssl/redis-ca.pem"
            )
        if not tls:
            raise RedisUrlError(
                f"REDIS_URL: {name} is a TLS option, and TLS needs the rediss scheme (rediss://, rediss+sentinel://, "
                "rediss+cluster://)"
            )
        if name in _TLS_KEEP_ON and value.strip().lower() not in _TLS_KEEP_ON[name]:
            raise RedisUrlError(
                f"REDIS_URL: {name}={value[:20]} would turn off the check of the server's certificate; chatops keeps "
                "it on. For a server whose certificate a private CA signed, name that CA: "
                "?ssl_ca_certs=/path/to/ca.pem"
            )
    files = TlsFiles(
        ca_certs=seen.get("ssl_ca_certs"), certfile=seen.get("ssl_certfile"), keyfile=seen.get("ssl_keyfile")
    )
    _check_tls_files(files)
    return files


def _check_tls_files(files: TlsFiles) -> None:
    """Loads the files as the TLS handshake will, so that a wrong path or content stops start-up, not each command."""
    if all(path is None for path in files.values()):
        return  # nothing to load; a default context would read the whole system CA store for nothing
    context = ssl.create_default_context()
    ca, cert, key = files["ca_certs"], files["certfile"], files["keyfile"]
    for name, path in (("ssl_ca_certs", ca), ("ssl_certfile", cert), ("ssl_keyfile", key)):
        if path is not None and not path:
            raise RedisUrlError(f"REDIS_URL: {name} is empty; give the path of a PEM file, e.g. {name}=/etc/ssl/x.pem")
    if key and not cert:
        raise RedisUrlError("REDIS_URL: ssl_keyfile needs ssl_certfile too (the client certificate of that key)")
    try:
        if ca:
            context.load_verify_locations(cafile=ca)
    except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
        raise RedisUrlError(f"REDIS_URL: ssl_ca_certs={ca}: {_file_problem(error, 'CA certificates')}") from None
    try:
        if cert:  # a password callback that refuses: OpenSSL would otherwise prompt on the terminal
            context.load_cert_chain(cert, key or None, password=_no_password)
    except (OSError, ValueError) as error:
        raise RedisUrlError(
            f"REDIS_URL: ssl_certfile={cert}"
            + (f", ssl_keyfile={key}" if key else "")
            + f": {_file_problem(error, 'a client certificate and its unencrypted private key')}"
        ) from None


def _no_password() -> str:
    raise ValueError("the private key is encrypted")


def _file_problem(error: Exception, wanted: str) -> str:
    if isinstance(error, FileNotFoundError):
        return "no such file"
    if isinstance(error, PermissionError):
        return "not readable by this process"
    if isinstance(error, IsADirectoryError):
        return "is a directory, not a file"
    return f"not {wanted} in PEM ({error})"


def _credentials(text: str) -> tuple[str | None, str | None]:
    user, colon, password = text.partition(":")
    if not colon:  # `secret@host`: redis-py reads a lone user-info as the password too
        return None, unquote(user) or None
    return unquote(user) or None, unquote(password) or None


def _node(text: str, index: int, kind: Kind, form: str) -> tuple[str, int]:
    match = _HOST.match(text.strip())
    if not text.strip():
        raise RedisUrlError(f"REDIS_URL: host {index} is empty; use {form}")
    if match is None:
        raise RedisUrlError(f"REDIS_URL: host {index} is not a host name or host:port; use {form}")
    host = match["v6"] or match["name"]
    port_text = match["port"]
    if port_text is None or port_text == "":
        return host, _DEFAULT_PORT[kind]
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise RedisUrlError(
            f"REDIS_URL: the port of host {index} ({host}) must be a number from 1 to 65535; use {form}"
        )
    return host, int(port_text)


def _db(text: str, form: str) -> int:
    if not text.isdigit() or int(text) > 10_000:
        raise RedisUrlError(f"REDIS_URL: the database must be a number such as 0; use {form}")
    return int(text)


class ReachableCluster(RedisCluster):
    """redis-py's cluster client, whose failure to reach any start-up node (a refused TLS certificate, say) is a
    ConnectionError like every other client's: redis-py raises RedisClusterException, which is not a RedisError,
    so callers that handle an unavailable Redis (the store, /readyz) would crash on it instead."""

    async def initialize(self, *args: Any, **kwargs: Any) -> RedisCluster:
        """Finds the cluster's nodes and slots; raises ConnectionError, saying why, when it cannot."""
        try:
            return await super().initialize(*args, **kwargs)
        except RedisClusterException as error:
            raise RedisConnectionError(str(error)) from error


class ExplainingSentinel(Sentinel):
    """redis-py's Sentinel client, whose "no master found" also says what each Sentinel answered: an unreachable
    Sentinel, a refused TLS certificate or an unknown master name, instead of the Sentinel clients' repr."""

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        """The master's address, as the first Sentinel that knows it healthy says; else why none does."""
        try:
            return await super().discover_master(service_name)
        except MasterNotFoundError as error:
            reasons = await asyncio.gather(*(self._why(sentinel) for sentinel in self.sentinels))
            raise MasterNotFoundError(
                f"no Sentinel named a healthy master {service_name!r}: {'; '.join(reasons)}"
            ) from error

    @staticmethod
    async def _why(sentinel: aioredis.Redis) -> str:
        options = sentinel.connection_pool.connection_kwargs
        where = f"Sentinel {options.get('host')}:{options.get('port')}"
        try:
            await sentinel.ping()
        except (RedisError, OSError) as error:
            return f"{where}: {error}"
        return f"{where} answers but knows no such master, or sees it down"


class BlockingSentinelConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
    """The Sentinel pool (finds the master, follows failovers) with the blocking pool's bound and wait."""

    async def aclose(self) -> None:
        """Closes the pool and the clients of the Sentinels it asks: they were made for it, and nothing else
        closes them (redis-py leaves their connections open, which an asyncio loop reports as a leak)."""
        try:
            await super().aclose()
        finally:
            for sentinel in self.sentinel_manager.sentinels:
                await sentinel.aclose()


def build_redis_client(target: RedisTarget, pool: PoolOptions) -> RedisClient:
    """The asyncio client for `target`, answering strings, with a bounded pool; close it with `aclose()`."""
    common: dict[str, object] = {
        "decode_responses": True,
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "socket_timeout": SOCKET_TIMEOUT_SECONDS,
    }
    if target.kind == "server":
        blocking = BlockingConnectionPool.from_url(
            target.url,
            max_connections=pool.max_connections,
            timeout=pool.timeout,
            health_check_interval=HEALTH_CHECK_SECONDS,
            **common,
        )
        return aioredis.Redis.from_pool(blocking)
    credentials = {"username": target.username, "password": target.password}
    if target.kind == "cluster":
        # redis-py's cluster pool is per node and does not wait: when it is exhausted a command fails at once.
        # Without TLS the ssl_ files are None (REDIS_URL refuses them), which is redis-py's default.
        return ReachableCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            max_connections=pool.max_connections,
            username=target.username,
            password=target.password,
            decode_responses=True,
            socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
            socket_timeout=SOCKET_TIMEOUT_SECONDS,
            ssl=target.tls,
            ssl_ca_certs=target.ca_certs,
            ssl_certfile=target.certfile,
            ssl_keyfile=target.keyfile,
        )
    # rediss+sentinel: the Sentinels are spoken to over TLS too (they carry the primary's address, which TLS to the
    # primary alone would not protect). A failed Sentinel query is not retried on the same Sentinel (redis-py's
    # client default, which takes seconds on a refused TLS handshake): the next Sentinel is the retry, and the
    # data connections are not retried either.
    sentinel_kwargs = {
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "socket_timeout": CONNECT_TIMEOUT_SECONDS,
        "retry": Retry(NoBackoff(), 0),
        **target.tls_options(),
    }
    sentinel = ExplainingSentinel(list(target.nodes), sentinel_kwargs=sentinel_kwargs)
    return sentinel.master_for(
        target.master,
        redis_class=aioredis.Redis,
        connection_pool_class=BlockingSentinelConnectionPool,
        db=target.db,
        max_connections=pool.max_connections,
        timeout=pool.timeout,
        health_check_interval=HEALTH_CHECK_SECONDS,
        **credentials,
        **common,
        **target.tls_options(),
    )

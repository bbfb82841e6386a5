"""`chatops audit export --since DATE [--until DATE]`: the audit log as JSON lines on stdout, one record a line,
oldest first, with stable field names (bot.platform.audit.EXPORT_FIELDS), so it can be kept elsewhere before
`retention.audit` trims it. Reads REDIS_URL and, from $CHATOPS_CONFIG when it exists, `redis.key_prefix`."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TextIO

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
DATE_HINT = "write YYYY-MM-DD (a UTC day) or an ISO 8601 time such as 2024-05-01T12:00:00Z"


def parse_when(flag: str, text: str) -> datetime:
    """A `--since`/`--until` value as an aware UTC datetime (a bare date is that day's midnight, UTC); ValueError
    saying which flag was wrong and how to write it."""
    value = text.strip()
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(), tzinfo=UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{flag}: {text!r} is not a date; {DATE_HINT}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def run_export(
    *, since: str, until: str | None, environ: Mapping[str, str] = os.environ, out: TextIO = sys.stdout
) -> int:
    """Parses the flags, then writes every record with since <= at < until to `out`: 0, or 2 on bad input (with
    a message on stderr and nothing written), or 1 when Redis fails."""
    try:
        start = parse_when("--since", since)
        end = parse_when("--until", until) if until is not None else None
    except ValueError as error:
        print(f"chatops audit export: {error}", file=sys.stderr)
        return EXIT_USAGE
    if end is not None and end <= start:
        print(f"chatops audit export: --until ({until}) must be after --since ({since})", file=sys.stderr)
        return EXIT_USAGE
    url = environ.get("REDIS_URL", "")
    if not url:
        print("chatops audit export: REDIS_URL is not set: e.g. redis://localhost:6379/0", file=sys.stderr)
        return EXIT_USAGE
    prefix = _key_prefix(environ)
    if prefix is None:
        return EXIT_USAGE
    return asyncio.run(_export(url, prefix, start, end, out))


def _key_prefix(environ: Mapping[str, str]) -> str | None:
    """`redis.key_prefix` from the configuration when one is named and exists, else the default."""
    from bot.shell.config import ConfigError, RedisSection, load_config

    path = environ.get("CHATOPS_CONFIG", "")
    if not path or not Path(path).exists():
        return RedisSection().key_prefix
    try:
        return load_config(path).redis.key_prefix
    except ConfigError as error:
        print(f"chatops audit export: the configuration is invalid\n{error}", file=sys.stderr)
        return None


async def _export(url: str, prefix: str, since: datetime, until: datetime | None, out: TextIO) -> int:
    from bot.platform.audit import AuditLog, export_line
    from bot.platform.errors import StoreUnavailable
    from bot.platform.keys import Keys
    from bot.platform.metrics import Metrics
    from bot.platform.redis_client import PoolOptions, RedisUrlError, build_redis_client, parse_redis_url
    from bot.platform.store import Store

    try:
        target = parse_redis_url(url)
    except RedisUrlError as error:
        print(f"chatops audit export: {error}", file=sys.stderr)
        return EXIT_USAGE
    client = build_redis_client(target, PoolOptions(max_connections=2))
    try:
        log = AuditLog(Store(client, Keys(prefix), Metrics()), clock=lambda: datetime.now(UTC))
        count = 0
        async for record in log.between(since, until):
            out.write(export_line(record) + "\n")
            count += 1
        out.flush()
    except StoreUnavailable as error:
        print(f"chatops audit export: {error}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await client.aclose()
    print(f"chatops audit export: {count} records", file=sys.stderr)
    return EXIT_OK

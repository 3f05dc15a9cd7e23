"""Connections to the online store: SQLite (embedded default) or Redis (production).

Every Redis connection carries connect and read timeouts from the settings, so an unreachable
server gives a clear ``OnlineStoreUnavailable`` within seconds instead of a hang.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import redis

from topicfeed.settings import Settings


class OnlineStoreUnavailable(RuntimeError):
    """The configured online store cannot be reached; the message says which and why."""


def unavailable(settings: Settings, exc: BaseException) -> OnlineStoreUnavailable:
    """The one error every Redis caller raises when the server cannot be reached."""
    return OnlineStoreUnavailable(f"Redis online store at {settings.redis_url} is unavailable: {exc} (timeout {settings.redis_timeout_s}s)")


@dataclass(frozen=True)
class RedisAddress:
    """The parts of a ``redis://[user:password@]host:port/db`` (or ``rediss://``) URL."""

    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    ssl: bool

    @classmethod
    def parse(cls, url: str) -> RedisAddress:
        parsed = urlparse(url)
        if parsed.scheme not in ("redis", "rediss"):
            raise ValueError(f"redis_url must start with redis:// or rediss://, got {url!r}")
        db = (parsed.path or "/0").lstrip("/") or "0"
        if not db.isdigit():
            raise ValueError(f"redis_url database must be a number, got {db!r} in {url!r}")
        return cls(parsed.hostname or "127.0.0.1", parsed.port or 6379, int(db), parsed.username or None, parsed.password, parsed.scheme == "rediss")


def redis_client(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=settings.redis_timeout_s,
        socket_timeout=settings.redis_timeout_s,
        retry_on_timeout=False,
    )


def check_online_store(settings: Settings) -> dict[str, Any]:
    """Reach the configured online store once and report what answered (and how fast)."""
    start = time.perf_counter()
    if settings.online_store == "sqlite":
        path = settings.sqlite_path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with sqlite3.connect(path, timeout=settings.redis_timeout_s) as con:
                version = con.execute("select sqlite_version()").fetchone()[0]
        except (OSError, sqlite3.Error) as exc:
            raise OnlineStoreUnavailable(f"SQLite online store at {path} is unavailable: {exc}") from exc
        return {"store": "sqlite", "path": str(path), "version": version, "latency_ms": _ms(start)}
    client = redis_client(settings)
    try:
        client.ping()
        version = client.info("server").get("redis_version")
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise unavailable(settings, exc) from exc
    finally:
        client.close()
    return {"store": "redis", "url": settings.redis_url, "version": version, "latency_ms": _ms(start)}


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)

"""Connections to the online store: SQLite (embedded default) or Redis (production).

Every Redis connection carries connect and read timeouts from the settings, so an unreachable
server gives a clear ``OnlineStoreUnavailable`` within seconds instead of a hang.
"""

from __future__ import annotations

import shutil
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from topicfeed.settings import Settings


class OnlineStoreUnavailable(RuntimeError):
    """The configured online store cannot be reached; the message says which and why."""


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
        raise OnlineStoreUnavailable(
            f"Redis online store at {settings.redis_url} is unavailable: {exc} (timeout {settings.redis_timeout_s}s)"
        ) from exc
    finally:
        client.close()
    return {"store": "redis", "url": settings.redis_url, "version": version, "latency_ms": _ms(start)}


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def local_redis_server(workdir: Path, timeout_s: float = 10.0, port: int | None = None) -> Iterator[str]:
    """Start ``redis-server`` on ``port`` (a free one by default) of 127.0.0.1 without persistence,
    yield its URL, stop it.

    For tests and benchmarks: a real server, never a mock."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server is not installed; `make test` installs it (apt-get install redis-server)")
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=0.2, socket_timeout=0.5)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {port}") from None
                time.sleep(0.05)
        yield url
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=30)

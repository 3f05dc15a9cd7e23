from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from featurestore.online import OnlineStoreUnavailable, check_online_store, redis_client
from topicfeed.settings import Settings


def test_real_redis_round_trip(redis_url: str, tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, online_store="redis", redis_url=redis_url)
    assert check_online_store(s)["store"] == "redis"
    client = redis_client(s)
    client.set("topicfeed:test", b"\x00\x01")
    assert client.get("topicfeed:test") == b"\x00\x01"


def test_silent_redis_times_out_instead_of_hanging(tmp_path: Path) -> None:
    """A server that accepts connections but never answers: the timeout must fire."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    s = Settings(data_dir=tmp_path, online_store="redis", redis_url=f"redis://127.0.0.1:{port}/0", redis_timeout_s=0.3)
    start = time.monotonic()
    with pytest.raises(OnlineStoreUnavailable, match=f"127.0.0.1:{port}"):
        check_online_store(s)
    assert time.monotonic() - start < 5
    listener.close()


def test_unwritable_sqlite_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    s = Settings(data_dir=blocker / "sub")
    with pytest.raises(OnlineStoreUnavailable, match="SQLite online store"):
        check_online_store(s)

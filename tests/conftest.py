"""Shared fixtures: isolated settings per test, the real shared data, and a real Redis server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from topicfeed.settings import Settings, SimulatorSettings

from redis_server import free_port, local_redis_server


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings whose data directory is a fresh temporary folder."""
    return Settings(data_dir=tmp_path / "data", simulator=SimulatorSettings(users=300, days=5, docs_per_day=80))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repository (or TOPICFEED_SHARED_DATA_DIR): real data, read in place."""
    path = Settings().shared_data_dir
    if not (path / "mind" / "news_train.tsv").is_file():
        pytest.fail(f"shared data not found at {path}; set TOPICFEED_SHARED_DATA_DIR")
    return path


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis server on 127.0.0.1: TOPICFEED_TEST_REDIS_URL if set, else one started here."""
    if url := os.environ.get("TOPICFEED_TEST_REDIS_URL"):
        yield url
        return
    try:
        with local_redis_server(tmp_path_factory.mktemp("redis")) as url:
            yield url
    except (FileNotFoundError, RuntimeError) as exc:
        pytest.fail(str(exc))


@pytest.fixture(name="free_port")
def free_port_fixture() -> int:
    return free_port()

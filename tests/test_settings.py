from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from topicfeed.settings import DEFAULT_TAXONOMY, Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test sees only what it sets: no ambient TOPICFEED_* variables, no topicfeed.yaml."""
    for name in [n for n in os.environ if n.startswith("TOPICFEED_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_are_embedded_sqlite() -> None:
    s = Settings()
    assert s.online_store == "sqlite"
    assert s.taxonomy_path == DEFAULT_TAXONOMY and DEFAULT_TAXONOMY.is_file()
    assert s.sqlite_path.parent == s.data_dir
    assert s.lake_dir == s.data_dir / "lake"
    assert s.data_dir == Path("topicfeed-data")


def test_yaml_in_the_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / "topicfeed.yaml").write_text("half_life_days: 4\n")
    assert Settings().half_life_days == 4


def test_env_overrides_including_nested(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TOPICFEED_DATA_DIR", str(tmp_path / "x"))
    monkeypatch.setenv("TOPICFEED_ONLINE_STORE", "redis")
    monkeypatch.setenv("TOPICFEED_HALF_LIFE_DAYS", "3.5")
    monkeypatch.setenv("TOPICFEED_SIMULATOR__USERS", "1234")
    s = Settings()
    assert s.data_dir == tmp_path / "x"
    assert s.online_store == "redis"
    assert s.half_life_days == 3.5
    assert s.simulator.users == 1234
    assert s.feed.intent_half_life_hours == 72.0 and s.intent.suggest_max_pairs == 1_000_000
    monkeypatch.setenv("TOPICFEED_FEED__INTENT_HALF_LIFE_HOURS", "null")  # the settings' None, from the environment
    monkeypatch.setenv("TOPICFEED_INTENT__SUGGEST_MAX_PAIRS", "null")
    s = Settings()
    assert s.feed.intent_half_life_hours is None and s.intent.suggest_max_pairs is None


def test_yaml_file_is_read_and_env_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "tf.yaml"
    cfg.write_text("redis_url: redis://127.0.0.1:7000/1\nhalf_life_days: 9\nsimulator:\n  days: 3\n")
    monkeypatch.setenv("TOPICFEED_CONFIG", str(cfg))
    monkeypatch.setenv("TOPICFEED_HALF_LIFE_DAYS", "2")
    s = Settings()
    assert s.redis_url == "redis://127.0.0.1:7000/1"
    assert s.simulator.days == 3
    assert s.half_life_days == 2


def test_missing_config_file_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TOPICFEED_CONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        Settings()


def test_invalid_values_are_rejected() -> None:
    with pytest.raises(ValidationError, match="online_store"):
        Settings(online_store="postgres")
    with pytest.raises(ValidationError, match="half_life_days"):
        Settings(half_life_days=0)
    with pytest.raises(ValidationError, match="unknown_field"):
        Settings(unknown_field=1)


def test_a_feed_source_is_switched_off_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOPICFEED_FEED__SOURCES__TRENDING__ENABLED", "false")
    monkeypatch.setenv("TOPICFEED_FEED__SOURCES__TOPICS__LIMIT", "120")
    enabled = Settings().feed.sources.enabled()
    assert "trending" not in enabled and enabled["topics"] == 120 and enabled["popular"] == 60 and len(enabled) == 6

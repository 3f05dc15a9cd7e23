"""The near-real-time refiner as a process of its own (``intent.realtime.IntentProcess``): it refines
and pushes what is submitted, reports failed batches, survives its own death and says why it cannot
start. A tiny Llama refiner made here; the push writes JSON lines (the service test covers the real
online store)."""

from __future__ import annotations

import functools
import json
import os
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from intent.model import IntentRefiner, Request
from intent.realtime import FreshSearch, IntentProcess, IntentQueue
from topicfeed.settings import Settings

from tiny_lm import tiny_llama_dir


def write_lines(path: str, records: list[dict]) -> None:
    """The push the refiner process runs (a module-level function: it is pickled to the process)."""
    if any(r["query"] == "boom" for r in records):
        raise ValueError("the store refused a record")
    with open(path, "a", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records)


def until(check: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def search(user: str, query: str, title: str) -> FreshSearch:
    return FreshSearch(user, query, (title,), datetime(2026, 12, 6, 12, tzinfo=UTC))


@pytest.fixture(scope="module")
def refiner_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("refiner")
    return IntentRefiner.from_base(tiny_llama_dir(tmp / "lm"), num_beams=2, max_new_tokens=6).save_pretrained(tmp / "refiner")


def test_the_refiner_process_refines_reports_failures_and_outlives_its_own_death(refiner_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "pushed.jsonl"
    refined: list[tuple[str, str]] = []
    batches: list[tuple[int, list[float]]] = []
    failed: list[int] = []
    lock = threading.Lock()

    def on_refined(s: FreshSearch, r: str) -> None:
        with lock:
            refined.append((s.user_id, r))

    worker = IntentProcess(
        Settings(data_dir=tmp_path / "data"),
        refiner_dir,
        on_refined=on_refined,
        on_batch=lambda n, waits: batches.append((n, waits)),
        on_failed=failed.append,
        push=functools.partial(write_lines, str(out)),
        max_wait_s=0.2,
    )
    try:
        assert worker.pid != os.getpid()
        for user, query, title in [("u1", "pole saw", "ryobi 40v cordless pole saw"), ("u2", "aespa", "aespa announce japanese debut album hot mess")]:
            worker.submit(search(user, query, title))
        until(lambda: worker.refined == 2)
        pushed = [json.loads(line) for line in out.read_text().splitlines()]
        assert sorted(r["user_id"] for r in pushed) == ["u1", "u2"]
        by_user = {r["user_id"]: r for r in pushed}
        assert {"pole", "saw"} <= set(by_user["u1"]["refined_query"].split()) and "aespa" in by_user["u2"]["refined_query"].split()  # key tokens
        assert sorted(refined) == sorted((r["user_id"], r["refined_query"]) for r in pushed)  # what was pushed is what the caller heard
        assert sum(n for n, _ in batches) == 2 and all(0 < w < 60 for _, waits in batches for w in waits)
        # the same request refined in this process: the same Q* (the process serves the saved model as configured)
        here = IntentRefiner.from_pretrained(refiner_dir, serving_precision=Settings().intent.serving_precision)
        assert by_user["u1"]["refined_query"] == here.predict([Request("pole saw", ("ryobi 40v cordless pole saw",))])[0]

        worker.submit(search("u3", "boom", "a title"))  # its push fails: a failed batch, reported with its size
        until(lambda: failed == [1])
        assert worker.failed_batches == 1 and worker.refined == 2

        first = worker.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)  # the process dies; a new one takes the next searches
        until(lambda: worker.restarts == 1)
        assert worker.pid != first
        worker.submit(search("u4", "lasagna", "classic beef lasagna with bechamel sauce recipe"))
        until(lambda: worker.refined == 3)
        assert worker.status() == {"worker": "process", "alive": True, "pid": worker.pid, "restarts": 1, "refined": 3, "failed_batches": 1, "dropped": 0}
        assert any(r["user_id"] == "u4" and "lasagna" in r["refined_query"].split() for r in map(json.loads, out.read_text().splitlines()))
    finally:
        worker.close()
    assert not worker._process.is_alive() and worker.status()["alive"] is False


def test_a_refiner_process_that_cannot_load_says_why(tmp_path: Path) -> None:
    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(RuntimeError, match="failed to start .*not-a-model"):
        IntentProcess(Settings(data_dir=tmp_path / "data"), tmp_path / "not-a-model", push=functools.partial(write_lines, str(tmp_path / "x")))


def test_the_thread_worker_reports_a_failed_batch_and_goes_on(refiner_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "pushed.jsonl"
    failed: list[int] = []
    worker = IntentQueue(Settings(data_dir=tmp_path / "data"), IntentRefiner.from_pretrained(refiner_dir), push=functools.partial(write_lines, str(out)), on_failed=failed.append)
    try:
        worker.submit(search("u1", "boom", "a title"))
        until(lambda: failed == [1])
        worker.submit(search("u2", "pole saw", "ryobi 40v cordless pole saw"))
        until(lambda: worker.refined == 1)
        assert worker.status() == {"worker": "thread", "alive": True, "refined": 1, "failed_batches": 1}
        assert [json.loads(line)["user_id"] for line in out.read_text().splitlines()] == ["u2"]
    finally:
        worker.close()


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")  # exited (a zombie until its new parent reaps it)


def test_a_refiner_process_whose_parent_is_killed_ends(refiner_dir: Path, tmp_path: Path) -> None:
    """Killed, the parent never says to close: the refiner process notices and ends by itself."""
    import subprocess
    import sys

    script = tmp_path / "parent.py"
    script.write_text(
        "import sys, time\n"
        "from intent.realtime import IntentProcess\n"
        "from topicfeed.settings import Settings\n"
        "if __name__ == '__main__':\n"
        "    w = IntentProcess(Settings(data_dir=sys.argv[2]), sys.argv[1], push=print)\n"
        "    print(w.pid, flush=True)\n"
        "    time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, str(script), str(refiner_dir), str(tmp_path / "data")], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    try:
        child = int(parent.stdout.readline())  # type: ignore[union-attr]
        assert not _gone(child)
        parent.kill()
        parent.wait(10)
        until(lambda: _gone(child), timeout=15)
    finally:
        parent.kill()

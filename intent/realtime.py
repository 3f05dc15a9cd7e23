"""The near-real-time path: a search with clicks, as it arrives, refined and pushed online.

``submit`` queues a ``FreshSearch`` (user, query, clicked titles, time) and returns at once; a worker
takes what has queued up (micro-batches: at most ``max_batch``, waiting at most ``max_wait_s`` for
more), refines the batch in one ``predict`` call, pushes the intents to the online store
(``featurestore.intents.push_intents``: the user's next feed request reads them), and then the
caller's ``on_batch`` (its size and each search's wait, submit to pushed) and ``on_refined`` (per
search) run. A failed batch is counted, logged and reported (``on_failed``, with its size), and the
service keeps serving: the search still counts as a fresh interest under its raw query.

Two workers, one interface (``submit``, ``close``, ``status()``, ``refined``, ``failed_batches``):

- ``IntentQueue(settings, refiner)``: a thread of the caller's process, over a refiner in memory.
- ``IntentProcess(settings, model_dir)``: a process of its own (spawned), which loads the refiner and
  the feature store itself. Beam search runs much Python per step; on a thread it holds the
  interpreter lock against the HTTP worker's requests, in a process it does not. The caller's
  callbacks run on a thread that reads the process's answers. If the process dies, the searches it
  held are counted as a failed batch (never sent again: one of them may be what killed it) and a new
  process is started for the next ones (``restarts``); if that fails too, later searches are
  counted in ``dropped`` and keep their raw queries.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing as mp
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

from intent.model import Request
from intent.students import Student, load_refiner
from intent.suggest import QuerySuggester, suggester_for
from topicfeed.settings import Settings

log = logging.getLogger(__name__)

Push = Callable[[list[dict]], object]


@dataclass(frozen=True)
class FreshSearch:
    user_id: str
    query: str
    titles: tuple[str, ...]
    ts: datetime


class _Gets(Protocol):
    """What ``take`` reads: a ``queue.Queue`` or the refiner process's ``_PipeInbox``."""

    def get(self, block: bool = True, timeout: float | None = None) -> Any: ...  # noqa: ANN401

    def put(self, obj: Any, block: bool = True, timeout: float | None = None) -> None: ...  # noqa: ANN401


def take(inbox: _Gets, max_batch: int, max_wait_s: float) -> list | None:
    """The next micro-batch: the first item (waiting for it), then what arrives within ``max_wait_s``,
    at most ``max_batch``; ``None`` once the closing ``None`` is the first item."""
    first = inbox.get()
    if first is None:
        return None
    batch = [first]
    deadline = time.monotonic() + max_wait_s
    while len(batch) < max_batch:
        try:
            item = inbox.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if item is None:
            inbox.put(None)
            break
        batch.append(item)
    return batch


def refine_and_push(refiner: Student, push: Push, batch: list[FreshSearch], suggester: QuerySuggester | None = None) -> list[str]:
    """Refine the batch and push each search's Q* (and, with ``suggester``, its re-search suggestion)."""
    requests = [Request(s.query, s.titles) for s in batch]
    refined = refiner.predict(requests)
    suggested = suggester.predict(requests) if suggester is not None else [""] * len(batch)
    push([{"user_id": s.user_id, "query": s.query, "refined_query": r, "suggested_query": x, "ts": s.ts.isoformat()} for s, r, x in zip(batch, refined, suggested)])
    return refined


def store_push(settings: Settings) -> Push:
    """Push to the settings' online store; the Feast store is made once (one per push costs more than the push)."""
    from featurestore.intents import push_intents
    from featurestore.repo import get_store

    store = get_store(settings)
    return lambda records: push_intents(settings, records, store=store)


class _Callbacks:
    """What both workers do with a refined batch: count it and report it."""

    def __init__(
        self,
        on_refined: Callable[[FreshSearch, str], None] | None,
        on_batch: Callable[[int, list[float]], None] | None,
        on_failed: Callable[[int], None] | None,
    ) -> None:
        self.on_refined, self.on_batch, self.on_failed = on_refined, on_batch, on_failed
        self.refined = 0
        self.failed_batches = 0

    def _failed(self, searches: int) -> None:
        self.failed_batches += 1
        if self.on_failed:
            self.on_failed(searches)

    def _done(self, batch: list[FreshSearch], refined: list[str], submitted: list[float]) -> None:
        now = time.perf_counter()
        if self.on_batch:
            self.on_batch(len(batch), [now - t for t in submitted])
        for s, r in zip(batch, refined):
            self.refined += 1
            if self.on_refined:
                self.on_refined(s, r)


class IntentQueue(_Callbacks):
    """The worker as a thread of this process, over a refiner in memory."""

    def __init__(
        self,
        settings: Settings,
        refiner: Student,
        on_refined: Callable[[FreshSearch, str], None] | None = None,
        push: Push | None = None,
        on_batch: Callable[[int, list[float]], None] | None = None,
        max_batch: int = 32,
        max_wait_s: float = 0.05,
        on_failed: Callable[[int], None] | None = None,
        suggester: QuerySuggester | None = None,
    ) -> None:
        super().__init__(on_refined, on_batch, on_failed)
        self.refiner = refiner
        self.suggester = suggester
        self.push = push or store_push(settings)
        self.max_batch, self.max_wait_s = max_batch, max_wait_s
        self._queue: queue.Queue[tuple[FreshSearch, float] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="intent-refiner", daemon=True)
        self._thread.start()

    def submit(self, search: FreshSearch) -> None:
        self._queue.put((search, time.perf_counter()))

    def status(self) -> dict[str, object]:
        return {"worker": "thread", "alive": self._thread.is_alive(), "refined": self.refined, "failed_batches": self.failed_batches}

    def close(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while (batch := take(self._queue, self.max_batch, self.max_wait_s)) is not None:
            searches = [s for s, _ in batch]
            try:
                refined = refine_and_push(self.refiner, self.push, searches, self.suggester)
            except Exception:  # noqa: BLE001 - the service keeps serving; the raw query stays the reason
                self._failed(len(batch))
                log.exception("refining %d fresh searches failed", len(batch))
                continue
            self._done(searches, refined, [t for _, t in batch])


class _PipeInbox:
    """The refiner process's end of the pipe its searches come through, as ``take`` reads a queue: the
    parent's end closing (its ``close``, or its death: killed, it never says to close) reads as the
    closing ``None``, so the process never outlives its parent."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.closing = False

    def get(self, block: bool = True, timeout: float | None = None) -> Any:  # noqa: ANN401
        if self.closing:
            return None
        if timeout is not None and not self.conn.poll(timeout):
            raise queue.Empty
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            return None

    def put(self, obj: Any, block: bool = True, timeout: float | None = None) -> None:  # noqa: ANN401
        if obj is None:  # take hands back the closing None it met
            self.closing = True


def _serve(settings: Settings, model_dir: str, push: Push | None, max_batch: int, max_wait_s: float, inbox: Connection, outbox: Connection) -> None:
    """The refiner process: load, say ready (or why not), then refine and push each micro-batch of
    ``(key, search)`` and answer ``("done", keys, refined)`` or ``("failed", keys, why)``."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s intent-refiner %(message)s")
    try:
        refiner = load_refiner(model_dir, **settings.intent.serving())
        suggester = suggester_for(settings, model_dir)
        push = push or store_push(settings)
    except Exception as e:  # noqa: BLE001 - told to the parent, which raises it
        outbox.send(("error", f"{type(e).__name__}: {e}"))
        return
    outbox.send(("ready", None))
    searches = _PipeInbox(inbox)
    while (batch := take(searches, max_batch, max_wait_s)) is not None:
        keys = [k for k, _ in batch]
        try:
            answer = ("done", keys, refine_and_push(refiner, push, [s for _, s in batch], suggester))
        except Exception as e:  # noqa: BLE001 - the service keeps serving
            log.exception("refining %d fresh searches failed", len(batch))
            answer = ("failed", keys, f"{type(e).__name__}: {e}")
        try:
            outbox.send(answer)
        except OSError:  # the parent is gone
            return


class IntentProcess(_Callbacks):
    """The worker as a process of its own; ``push`` (default: the settings' online store) must be
    picklable, as it is sent to the process. Searches go to it and answers come back over two pipes
    (``multiprocessing.Pipe``: no named semaphores, which ``multiprocessing.Queue`` would leave behind
    when uvicorn ends on the signal it re-raises, before any exit handler runs); a thread sends, so
    ``submit`` never waits on a busy process."""

    def __init__(
        self,
        settings: Settings,
        model_dir: str | Path,
        on_refined: Callable[[FreshSearch, str], None] | None = None,
        push: Push | None = None,
        on_batch: Callable[[int, list[float]], None] | None = None,
        max_batch: int = 32,
        max_wait_s: float = 0.05,
        on_failed: Callable[[int], None] | None = None,
        start_timeout_s: float = 300.0,
    ) -> None:
        super().__init__(on_refined, on_batch, on_failed)
        self._args = (settings, str(model_dir), push, max_batch, max_wait_s)
        self.start_timeout_s = start_timeout_s
        self._ctx = mp.get_context("spawn")  # never fork a process that has started threads (torch, the HTTP server)
        self._pending: dict[int, tuple[FreshSearch, float]] = {}
        self._outgoing: queue.Queue[tuple[int, FreshSearch] | None] = queue.Queue()
        self._keys = itertools.count()
        self._lock = threading.Lock()
        self._closing = False
        self._broken = False
        self._ready = threading.Event()  # clear while a dead process is replaced: the sender holds what comes meanwhile
        self.restarts = 0
        self.dropped = 0
        self._start()
        self._sender = threading.Thread(target=self._send, name="intent-refiner-searches", daemon=True)
        self._reader = threading.Thread(target=self._read, name="intent-refiner-answers", daemon=True)
        self._sender.start()
        self._reader.start()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def status(self) -> dict[str, object]:
        alive = self._ready.is_set() and self._process.is_alive() and not self._broken
        return {
            "worker": "process",
            "alive": alive,
            "pid": self.pid,
            "restarts": self.restarts,
            "refined": self.refined,
            "failed_batches": self.failed_batches,
            "dropped": self.dropped,
        }

    def _start(self) -> None:
        try:
            self._spawn()
        except Exception:
            self._to_child.close()
            self._from_child.close()
            raise
        self._ready.set()

    def _spawn(self) -> None:
        inbox, self._to_child = self._ctx.Pipe(duplex=False)
        self._from_child, outbox = self._ctx.Pipe(duplex=False)
        self._process = self._ctx.Process(target=_serve, args=(*self._args, inbox, outbox), name="intent-refiner", daemon=True)
        self._process.start()
        inbox.close()  # the process's ends: closed here, so that either side's end reads as EOF to the other
        outbox.close()
        deadline = time.monotonic() + self.start_timeout_s
        while not self._from_child.poll(0.5):
            if not self._process.is_alive():
                raise RuntimeError(f"the intent refiner process exited with code {self._process.exitcode} before it was ready")
            if time.monotonic() > deadline:
                self._process.kill()
                raise RuntimeError(f"the intent refiner process was not ready in {self.start_timeout_s:.0f}s")
        try:
            kind, detail = self._from_child.recv()
        except EOFError:
            kind, detail = "error", "it exited"
        if kind != "ready":
            self._process.join(5)
            raise RuntimeError(f"the intent refiner process failed to start ({self._args[1]}): {detail} (exit code {self._process.exitcode})")

    def submit(self, search: FreshSearch) -> None:
        if self._broken:
            self.dropped += 1
            if self.on_failed:
                self.on_failed(1)
            return
        with self._lock:
            key = next(self._keys)
            self._pending[key] = (search, time.perf_counter())
        self._outgoing.put((key, search))

    def close(self, timeout: float = 10.0) -> None:
        self._closing = True
        self._outgoing.put(None)
        self._sender.join(timeout)
        self._reader.join(timeout)
        self._process.join(max(1.0, timeout / 2))
        if self._process.is_alive():
            self._process.kill()
            self._process.join(1.0)
        self._from_child.close()

    def _send(self) -> None:
        while (item := self._outgoing.get()) is not None:
            while not self._ready.wait(0.5):
                if self._closing:
                    return
            if item[0] not in self._pending:  # counted as failed with a dead process
                continue
            try:
                self._to_child.send(item)
            except OSError:  # the process died as it was sent: to the next one, unless counted as failed
                if not self._broken:
                    self._outgoing.put(item)
        self._to_child.close()  # the process reads EOF: it finishes its batch and ends

    def _read(self) -> None:
        while True:
            try:
                if not self._from_child.poll(0.5):
                    if self._process.is_alive():
                        continue
                    raise EOFError
                answer = self._from_child.recv()
            except (EOFError, OSError):  # the process ended: asked to, or it died
                if self._closing:
                    return
                self._lost()
                continue
            kind, keys, detail = answer
            with self._lock:
                held = [self._pending.pop(k) for k in keys if k in self._pending]
            if kind == "failed":
                self._failed(len(keys))
                log.error("refining %d fresh searches failed in the refiner process: %s", len(keys), detail)
                continue
            try:
                self._done([s for s, _ in held], detail, [t for _, t in held])
            except Exception:  # noqa: BLE001 - a callback's failure must not stop the answers
                log.exception("handling %d refined searches failed", len(held))

    def _lost(self) -> None:
        """The process died: what it held (and what waits to be sent to it) is a failed batch, and a new
        process takes the next searches."""
        self._ready.clear()
        self._process.join(1.0)
        code = self._process.exitcode
        with self._lock:
            held = len(self._pending)
            self._pending.clear()
        self._to_child.close()
        self._from_child.close()
        log.error("the intent refiner process exited (code %s) holding %d searches; starting a new one", code, held)
        if held:
            self._failed(held)
        self.restarts += 1
        try:
            self._start()
        except Exception:  # noqa: BLE001 - keep serving without a refiner
            log.exception("the intent refiner process could not be restarted; fresh searches keep their raw queries")
            self._broken = True
            self._closing = True
            with self._lock:
                lost = len(self._pending)
                self._pending.clear()
            if lost:
                self._failed(lost)

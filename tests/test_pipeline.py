"""The classifier's data pipeline: the local judge and teacher on real MIND news, the weak-label step,
and the OpenAI-compatible judge/teacher client against a local HTTP server speaking that protocol."""

from __future__ import annotations

import json
import re
import statistics
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from classifier.data import Doc, load_documents, split
from classifier.pipeline import EmbeddingJudge, LLMJudge, LLMTeacher, MarkovTeacher, OpenAICompatible, under_covered, weak_label
from topicfeed.taxonomy import Taxonomy


@pytest.fixture(scope="module")
def mind(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Taxonomy, list[Doc], list[Doc]]:
    taxonomy = Taxonomy.load(shared_data / "mind" / "taxonomy.tsv")
    docs = load_documents(shared_data / "mind" / "news_train.tsv", taxonomy, tmp_path_factory.mktemp("q")).docs
    train, dev = split(docs, 0.2, seed=13)
    return taxonomy, train, dev


def test_embedding_judge_fills_the_rubric(mind) -> None:
    taxonomy, train, dev = mind
    judge = EmbeddingJudge(taxonomy).fit(train)
    docs = [d for d in dev if len(taxonomy.children(taxonomy.node(d.topic).parent)) > 1][:120]
    right = judge.score(docs, [d.topic for d in docs])

    # a wrong subcategory in the right category, and a wrong category altogether
    def sibling(d: Doc) -> str:
        node = taxonomy.node(d.topic)
        return next(taxonomy.nodes[c].path for c in taxonomy.children(node.parent) if taxonomy.nodes[c].path != d.topic)

    def elsewhere(d: Doc) -> str:
        return next(n.path for n in taxonomy if n.level == 2 and n.parts[0] != d.topic.split(" > ")[0])

    near = judge.score(docs, [sibling(d) for d in docs])
    far = judge.score(docs, [elsewhere(d) for d in docs])
    top_only = judge.score(docs, [d.topic.split(" > ")[0] for d in docs])
    assert all(0 <= s <= 100 for s in right + near + far + top_only)
    assert statistics.mean(right) > statistics.mean(near) > statistics.mean(far)
    assert statistics.mean(right) > 2 * statistics.mean(near) and statistics.mean(far) < 10
    assert max(top_only) <= 30  # right only at the top level: at most 30 by the rubric


def test_weak_labels_keep_what_the_judge_passes(mind) -> None:
    taxonomy, train, dev = mind

    class Fixed:  # a model whose answers we know: the gold topic for even docs, a wrong one for odd
        def predict(self, docs, k=1):
            from classifier.model import TopicScore

            out = []
            for i, d in enumerate(docs):
                path = d.topic if i % 2 == 0 else "weather > weathertopstories" if not d.topic.startswith("weather") else "news > newsus"
                out.append([TopicScore(path, 2, 0.9)])
            return out

    judge = EmbeddingJudge(taxonomy).fit(train)
    pool = dev[:60]
    weak = weak_label(Fixed(), pool, judge, threshold=80)
    assert weak.proposed == 60 and len(weak.scores) == 60
    kept_right = sum(1 for d in weak.kept if d.topic == next(p.topic for p in pool if p.doc_id == d.doc_id))
    assert len(weak.kept) > 0 and kept_right / len(weak.kept) >= 0.9
    assert {d.doc_id for d in weak.kept} == {p.doc_id for p, s in zip(pool, weak.scores) if s >= 80}
    assert len(weak.at(0).kept) == 60


def test_markov_teacher_writes_on_topic_title_then_body(mind) -> None:
    taxonomy, train, _ = mind
    teacher = MarkovTeacher(taxonomy).fit(train)
    counts = Counter(d.topic for d in train)
    topic = min(t for t, c in counts.items() if 3 <= c < 8)
    written = teacher.write(topic, 5, seed=1)
    assert len(written) == 5 and all(d.topics == (topic,) and d.title and d.body for d in written)
    assert len({d.doc_id for d in written}) == 5
    assert teacher.write(topic, 5, seed=1) == written  # deterministic per seed
    vocab = {w.lower() for d in train if d.topic == topic for w in re.findall(r"\w+", d.text)}
    words = [w.lower() for d in written for w in re.findall(r"\w+", d.title)]
    assert sum(w in vocab for w in words) / len(words) > 0.9  # titles are built from the topic's own titles
    rare = under_covered(taxonomy, train, min_docs=8)
    assert topic in rare and "news > newsus" not in rare
    assert all(taxonomy.node(t).level == 2 for t in rare)


class _ChatServer(BaseHTTPRequestHandler):
    """Answers chat completions the way an OpenAI-compatible server does, from fixed rules."""

    requests: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
        prompt = body["messages"][-1]["content"]
        if "Score:" in prompt:
            content = "Score: 85" if "golf" in prompt.split("Topic:")[-1] else "no idea"
        elif "headline" in prompt.lower() and "Headline:" not in prompt:
            content = '"Masters leader shoots 65"'
        else:
            content = "The leader shot a 65 on Thursday. Rain is forecast."
        payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def chat_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChatServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _ChatServer.requests = []
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_llm_judge_and_teacher_speak_chat_completions(chat_url: str) -> None:
    client = OpenAICompatible(chat_url, "big-model", api_key="secret")
    doc = Doc("g1", "Masters", "golf round", ("sports > golf",))
    assert LLMJudge(client).score([doc], ["sports > golf"]) == [85.0]
    with pytest.raises(ValueError, match="document 'g1' has no score"):
        LLMJudge(client).score([doc], ["news > newsus"])
    written = LLMTeacher(client).write("sports > golf", 2, seed=3)
    assert [d.title for d in written] == ["Masters leader shoots 65"] * 2
    assert written[0].body.startswith("The leader shot") and written[0].topics == ("sports > golf",)
    req = _ChatServer.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer secret" and req["model"] == "big-model"
    # the body prompt carries the title the teacher wrote first
    assert "Masters leader shoots 65" in _ChatServer.requests[-1]["messages"][-1]["content"]


def test_ablation_trains_after_each_step(tmp_path: Path) -> None:
    from test_classifier import SMALL, toy_docs

    from classifier.pipeline import run_ablation
    from topicfeed.settings import ClassifierSettings

    from tiny_models import save_tiny

    docs = toy_docs()
    gold = [d for i, d in enumerate(docs) if i % 3 == 0]
    pool = [d for i, d in enumerate(docs) if i % 3 == 1]
    dev = [d for i, d in enumerate(docs) if i % 3 == 2]
    cs = ClassifierSettings(base_model=str(save_tiny("bert", tmp_path / "bert")), epochs=2, max_prompt_tokens=16, synthetic_min_docs=2, synthetic_per_topic=3, judge_threshold=0)
    lines: list[str] = []
    ablation = run_ablation(SMALL, gold, pool, dev, cs, progress=False, log=lines.append)
    steps = [r.step for r in ablation.rows]
    assert steps == ["1 SFT on gold", "2a + weak labels, no judge", "2 + weak labels, judge >= 0", "3 + synthetic (rare topics)"]
    sizes = [r.train_docs for r in ablation.rows]
    assert sizes[0] == len(gold) and sizes[1] == sizes[2] == len(gold) + len(pool)
    # every topic at the labels' depths has one gold doc (< 2): each gets 3 synthetic documents
    assert sizes[3] > sizes[2] and "docs for" in ablation.rows[3].note
    assert all(r.result.n_docs == len(dev) and r.result.valid_share == 1.0 for r in ablation.rows)
    assert "L2 R@3" in ablation.table() and len(lines) == 4

"""A prompted yes/no judge with a base LM (the option the issue names besides a fitted one), measured:
P(" yes") - P(" no") after "Article: ... Topic: ... Is the topic right?", zero-shot and after four
hand-written examples, as the score of (document, its MIND category) against (document, a random other
category). ROC AUC 0.5 is chance.

    .venv/bin/python benchmarks/judge_prompted.py [--docs 60] [--base gemma3-270m]
"""

from __future__ import annotations

import argparse
import random
import time

import torch
from sklearn.metrics import roc_auc_score

from classifier.data import load_documents
from classifier.lm import load_causal_lm
from topicfeed.settings import Settings
from topicfeed.taxonomy import Taxonomy, split_path

FEW = (
    "Article: Lakers beat the Celtics 112-104 behind 35 points from LeBron James.\nTopic: sports\nIs the topic right? yes\n\n"
    "Article: Stocks slide as the Fed signals more rate hikes this year.\nTopic: food and drink\nIs the topic right? no\n\n"
    "Article: Ten easy weeknight pasta recipes the whole family will love.\nTopic: food and drink\nIs the topic right? yes\n\n"
    "Article: Hurricane warning issued for the Florida coast as the storm strengthens.\nTopic: movies\nIs the topic right? no\n\n"
)


def main() -> None:
    settings = Settings()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=60)
    ap.add_argument("--base", default="gemma3-270m")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    taxonomy = Taxonomy.load(settings.shared_data_dir / "mind" / "taxonomy.tsv")
    docs = load_documents(settings.shared_data_dir / "mind" / "news_train.tsv", taxonomy, settings.quarantine_dir).docs
    rng = random.Random(0)
    rng.shuffle(docs)
    docs = docs[: args.docs]
    model, tok, _ = load_causal_lm(args.base)
    model.eval()
    tok.padding_side = "left"
    yes, no = tok(" yes", add_special_tokens=False)["input_ids"][0], tok(" no", add_special_tokens=False)["input_ids"][0]
    categories = sorted({split_path(d.topic)[0] for d in docs})
    for few in (False, True):
        pairs, y = [], []
        for d in docs:
            gold = split_path(d.topic)[0]
            pairs += [(d, gold), (d, rng.choice([c for c in categories if c != gold]))]
            y += [1, 0]
        start, scores = time.perf_counter(), []
        for i in range(0, len(pairs), 8):
            texts = [(FEW if few else "") + f"Article: {d.text[:300]}\nTopic: {t}\nIs the topic right?" for d, t in pairs[i : i + 8]]
            batch = tok(texts, return_tensors="pt", padding=True)
            with torch.inference_mode():
                logp = model(**batch, logits_to_keep=1).logits[:, -1].float().log_softmax(-1)
            scores += (logp[:, yes] - logp[:, no]).tolist()
        rate = len(pairs) / (time.perf_counter() - start)
        print(f"{'few-shot' if few else 'zero-shot'}: ROC AUC {roc_auc_score(y, scores):.3f} on {len(pairs)} pairs, {rate:.1f} pairs/s")


if __name__ == "__main__":
    main()

"""The classifier's learning curve: the default recipe on a fraction of the training split, scored on
the full dev split (the same split ``topicfeed classify train`` holds out), to see what more labelled
documents would buy.

    .venv/bin/python benchmarks/learning_curve.py --fraction 0.5 [--threads 2]

The subset is stratified by topic (``classifier.data.split`` with the recipe's seed). Each fraction
trains a model from the base (minutes on the 2-core CPU); the README's recipe table has the figures.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from classifier.data import load_documents, split
from classifier.evaluate import evaluate, format_results
from classifier.model import train_recipe
from topicfeed.settings import Settings
from topicfeed.taxonomy import Taxonomy


def main() -> None:
    settings = Settings()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fraction", type=float, required=True, help="share of the training split to train on, in (0, 1]")
    ap.add_argument("--data", type=Path, default=settings.shared_data_dir / "mind" / "news_train.tsv")
    ap.add_argument("--taxonomy", type=Path, default=settings.shared_data_dir / "mind" / "taxonomy.tsv")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if not 0 < args.fraction <= 1:
        ap.error("--fraction must be in (0, 1]")
    torch.set_num_threads(args.threads)
    cs = settings.classifier
    taxonomy = Taxonomy.load(args.taxonomy)
    docs = load_documents(args.data, taxonomy, settings.quarantine_dir).docs
    train, dev = split(docs, cs.dev_fraction, cs.seed)
    subset = train if args.fraction == 1 else split(train, 1 - args.fraction, cs.seed)[0]
    clf, seconds = train_recipe(cs, taxonomy, subset, progress=False)
    print(f"trained on {len(subset)} of {len(train)} training documents in {seconds:.0f} s; {len(dev)} dev documents")
    print(format_results([evaluate(f"default recipe, {args.fraction:.0%} of train", clf, dev, taxonomy, k=cs.num_beams)]))


if __name__ == "__main__":
    main()

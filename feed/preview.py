"""What a partner rule costs, offline, before it goes live (``topicfeed feed preview-rule``).

For a sample of the lake's users, the ranker scores its candidates (the partner's items among them);
the top ``n`` is then filled three ways: without the rule, with it (``feed.partner.place``: the least
loss), and with the same share placed at random (what a managed service does). The report gives the
mean DCG of the ranker's own scores for each, the relative loss against no rule, and the partner's
share of the slots.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from featurestore.profile import ProfileReader
from feed.catalog import Catalog
from feed.partner import dcg, place, quota, random_placement
from feed.ranker import Ranker
from topicfeed.settings import Settings


@dataclass
class RulePreview:
    partner: str
    share: float
    top_n: int
    users: int
    dcg_without: float
    dcg_rule: float
    dcg_random: float
    share_without: float
    share_rule: float
    pages_meeting_quota: float

    @property
    def loss_rule(self) -> float:
        return 1 - self.dcg_rule / self.dcg_without if self.dcg_without else 0.0

    @property
    def loss_random(self) -> float:
        return 1 - self.dcg_random / self.dcg_without if self.dcg_without else 0.0

    def table(self) -> str:
        return "\n".join(
            [
                f"partner {self.partner!r}, share {self.share:g} of the top {self.top_n} (quota {quota(self.top_n, self.share)}), {self.users} users",
                f"without the rule:     DCG {self.dcg_without:.4f}, partner share {self.share_without:.1%}",
                f"with the rule:        DCG {self.dcg_rule:.4f} (loss {self.loss_rule:.2%}), partner share {self.share_rule:.1%}, quota met on {self.pages_meeting_quota:.1%} of pages",
                f"random placement:     DCG {self.dcg_random:.4f} (loss {self.loss_random:.2%})",
                f"the rule's loss is {self.loss_rule / self.loss_random:.2f}x random placement's" if self.loss_random > 0 else "random placement loses nothing here",
            ]
        )


def preview_rule(settings: Settings, partner: str, share: float, *, top_n: int = 10, users: int = 500, seed: int = 0) -> RulePreview:
    catalog = Catalog.load(settings)
    is_partner = catalog.partner == partner
    if not is_partner.any():
        known = sorted(set(catalog.partner) - {""})
        raise ValueError(f"no item of partner {partner!r}; partners in the catalog: {', '.join(known[:10]) or 'none'}")
    rng = np.random.default_rng(seed)
    sample = sorted(catalog.clicked)
    sample = [sample[i] for i in rng.choice(len(sample), size=min(users, len(sample)), replace=False)] if sample else []
    reader = ProfileReader(settings, now=lambda: catalog.asof)
    ranker = Ranker(settings.feed)
    q = quota(top_n, share)
    rows = []
    for user in sample:
        sc = ranker.scored(catalog, reader.get(user), user_id=user, now=catalog.asof, partner=partner)
        rel, flags = sc.score, is_partner[sc.cands]
        free = np.argsort(-rel, kind="stable")[:top_n]
        ruled = place(rel, flags, top_n, share)
        rand = random_placement(rel, flags, top_n, share, rng)
        n = len(free)
        rows.append((dcg(rel, free), dcg(rel, ruled), dcg(rel, rand), flags[free].sum() / n, flags[ruled].sum() / n, flags[ruled].sum() >= min(q, flags.sum())))
    reader.close()
    if not rows:
        raise ValueError("the lake has no users with clicks to preview the rule on")
    m = np.array(rows, dtype=np.float64).mean(axis=0)
    return RulePreview(partner, share, top_n, len(rows), *(float(x) for x in m))

"""Words for the synthetic world: entity names, aspects, titles, bodies and query typos."""

from __future__ import annotations

import re

import numpy as np

SYLLABLES = (
    "ka ro mi na te lu vo sa ri en da jo ve li mar tos ke zu ra no bel cor dan fi ga hal"
    " is jun kel lor mon nev or pra qui ros sol tam ul val wen xan yor zel"
).split()

FILLER = (
    "the a new this week after before with about from over more most first latest big small"
    " fans people experts report says show shows year season plan plans local global early"
    " late major top best guide update announced revealed today still again now"
).split()

GENERIC_ASPECTS = "news review guide price launch interview schedule tips update ranking".split()

# Aspect words per top-level topic of the shipped taxonomy; other taxonomies use the generic list.
ASPECTS: dict[str, list[str]] = {
    "Arts & Entertainment": "album tour concert trailer premiere comeback award episode release".split(),
    "Sports": "match score transfer injury highlights season final ranking lineup".split(),
    "Travel": "flights itinerary visa deals hotel tips festival budget route".split(),
    "Food & Drink": "recipe menu restaurant tasting ingredients review price opening".split(),
    "Technology & Computing": "launch review specs update price leak benchmark release patch".split(),
    "Business & Finance": "earnings stocks rates forecast report merger funding outlook".split(),
    "Automotive": "review price recall range mileage launch test lease".split(),
    "Health & Fitness": "symptoms study routine treatment tips risk workout guide".split(),
    "Home & Garden": "ideas cost tips makeover guide tools season design".split(),
    "Style & Fashion": "collection trend sale collab runway launch review lookbook".split(),
    "Family & Parenting": "tips advice activities schedule health costs guide".split(),
    "Education": "admissions exam course tuition scholarship ranking deadline".split(),
    "News & Politics": "vote bill ruling statement protest investigation forecast alert".split(),
    "Science": "discovery mission study launch research findings data telescope".split(),
    "Hobbies & Interests": "tournament tips kit collection patterns club trail guide".split(),
    "Real Estate": "prices rates listings rent market report deal lease".split(),
}

STOP = {"&", "and", "of", "the", "a", "-"}

KEYBOARD = "qwertyuiop asdfghjkl zxcvbnm".split()
NEIGHBOURS = {
    ch: "".join(row[max(0, i - 1) : i] + row[i + 1 : i + 2]) for row in KEYBOARD for i, ch in enumerate(row)
}


def name_words(name: str) -> list[str]:
    """Lower-case content words of a topic name: ``"Water Sports"`` -> ``["water", "sports"]``."""
    return [w for w in re.split(r"[\s/,()]+", name.lower()) if w and w not in STOP]


def entity_names(rng: np.random.Generator, count: int) -> list[str]:
    """Distinct pronounceable names ("Korvane", "Mirela Tosk"), about a third with two words."""
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < count:
        parts = rng.choice(SYLLABLES, size=rng.integers(2, 4))
        name = "".join(parts).capitalize()
        if rng.random() < 0.35:
            name += " " + "".join(rng.choice(SYLLABLES, size=2)).capitalize()
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


TITLE_TEMPLATES = (
    "{entity} {aspect}: what {topic} fans need to know",
    "{entity} {aspect} sparks {topic} buzz",
    "The {adj} {topic} {aspect} everyone is talking about: {entity}",
    "{entity} and the {aspect} that could change {topic}",
    "Inside {entity}'s {aspect}",
    "{topic} {aspect}: {entity} {verb}",
)
BROAD_TITLE_TEMPLATES = (
    "The state of {topic}: {aspect} and more",
    "{topic} {aspect} roundup",
    "Ten {topic} {aspect} ideas for the {adj} season",
)
ADJECTIVES = "new big surprising latest major quiet bold early".split()
VERBS = "surprises fans makes history responds sets a record returns wins big".split(" ")


def title(rng: np.random.Generator, entity: str | None, aspect: str, topic: str) -> str:
    templates = TITLE_TEMPLATES if entity else BROAD_TITLE_TEMPLATES
    text = templates[rng.integers(len(templates))].format(
        entity=entity or "", aspect=aspect, topic=topic, adj=ADJECTIVES[rng.integers(len(ADJECTIVES))], verb=VERBS[rng.integers(len(VERBS))]
    )
    return text[0].upper() + text[1:]


def body(rng: np.random.Generator, entities: list[str], aspects: list[str], topic_words: list[list[str]], sentences: int) -> str:
    """A few sentences mixing the document's entities, aspects, topic words and filler."""
    out = []
    for s in range(sentences):
        words: list[str] = []
        topic = topic_words[s % len(topic_words)]
        pool = topic + aspects + list(rng.choice(FILLER, size=4))
        words.extend(rng.choice(pool, size=int(rng.integers(6, 12))))
        if entities:
            words.insert(int(rng.integers(0, len(words))), entities[s % len(entities)])
        sentence = " ".join(words)
        out.append(sentence[0].upper() + sentence[1:] + ".")
    return " ".join(out)


def typo(rng: np.random.Generator, text: str) -> str:
    """One realistic slip of the keyboard: a swap, a dropped, doubled or neighbouring key."""
    letters = [i for i, c in enumerate(text) if c.isalpha()]
    if len(letters) < 3:
        return text
    i = letters[int(rng.integers(1, len(letters)))]
    kind = int(rng.integers(4))
    if kind == 0 and i + 1 < len(text) and text[i + 1].isalpha():
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    if kind == 1:
        return text[:i] + text[i + 1 :]
    if kind == 2:
        return text[:i] + text[i] + text[i:]
    near = NEIGHBOURS.get(text[i].lower(), "")
    return text[:i] + (near[int(rng.integers(len(near)))] if near else text[i]) + text[i + 1 :]

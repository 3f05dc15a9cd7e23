"""Hierarchical topic taxonomies.

A topic is a path of names from the root, written ``Tier1 > Tier2 > Tier3``. Three file
formats load into the same ``Taxonomy``:

* IAB Tech Lab TSV (``Unique ID, Parent, Name, Tier 1..4``; a title row may precede the header),
* MIND's two-column ``category<TAB>subcategory`` file (with or without that header),
* a plain file with one path per line (``a > b > c``); ancestors are added if missing.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

SEP = " > "


def split_path(path: str) -> tuple[str, ...]:
    """``"a > b"`` -> ``("a", "b")``; tolerant of spacing around ``>``."""
    parts = tuple(p.strip() for p in path.split(">"))
    if not parts or any(not p for p in parts):
        raise ValueError(f"not a topic path: {path!r}")
    return parts


def join_path(parts: Iterable[str]) -> str:
    return SEP.join(parts)


@dataclass(frozen=True)
class TopicNode:
    """One node of the taxonomy. ``level`` is 1 for a top-level topic."""

    id: int
    parts: tuple[str, ...]
    parent: int | None
    source_id: str | None = None

    @property
    def path(self) -> str:
        return join_path(self.parts)

    @property
    def name(self) -> str:
        return self.parts[-1]

    @property
    def level(self) -> int:
        return len(self.parts)


@dataclass
class Taxonomy:
    """An ordered tree of topic nodes; node ids are positions in ``nodes`` (0..n-1)."""

    nodes: list[TopicNode]
    name: str = "taxonomy"
    _by_path: dict[tuple[str, ...], int] = field(default_factory=dict, repr=False)
    _children: dict[int | None, list[int]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_path = {}
        self._children = {}
        for node in self.nodes:
            if node.parts in self._by_path:
                raise ValueError(f"duplicate topic path {node.path!r} in {self.name}")
            self._by_path[node.parts] = node.id
            self._children.setdefault(node.parent, []).append(node.id)

    # construction -------------------------------------------------------------------------
    @classmethod
    def from_paths(cls, paths: Iterable[str | tuple[str, ...]], name: str = "taxonomy") -> Taxonomy:
        """Build from paths in order; every missing ancestor is added before its child."""
        nodes: list[TopicNode] = []
        index: dict[tuple[str, ...], int] = {}
        for raw in paths:
            parts = split_path(raw) if isinstance(raw, str) else tuple(raw)
            for depth in range(1, len(parts) + 1):
                prefix = parts[:depth]
                if prefix not in index:
                    parent = index[prefix[:-1]] if depth > 1 else None
                    index[prefix] = len(nodes)
                    nodes.append(TopicNode(len(nodes), prefix, parent))
        return cls(nodes, name=name)

    @classmethod
    def load(cls, path: str | Path) -> Taxonomy:
        """Load any of the three supported formats, detected from the file's content."""
        path = Path(path)
        with path.open(newline="", encoding="utf-8") as fh:
            rows = [row for row in csv.reader(fh, delimiter="\t") if any(c.strip() for c in row)]
        if not rows:
            raise ValueError(f"{path}: empty taxonomy file")
        header_at = next((i for i, r in enumerate(rows[:5]) if r and r[0].strip() == "Unique ID"), None)
        if header_at is not None:
            return cls._from_iab(rows[header_at + 1 :], header=rows[header_at], name=path.stem)
        if all(len([c for c in r if c.strip()]) == 2 for r in rows):
            body = rows[1:] if [c.strip().lower() for c in rows[0][:2]] == ["category", "subcategory"] else rows
            return cls.from_paths(((r[0].strip(), r[1].strip()) for r in body), name=path.stem)
        return cls.from_paths((r[0] for r in rows), name=path.stem)

    @classmethod
    def _from_iab(cls, rows: list[list[str]], header: list[str], name: str) -> Taxonomy:
        """Rows may come in any order (IAB 3.1 lists a few children before their parent)."""
        tier_cols = [i for i, h in enumerate(header) if h.strip().lower().startswith("tier ")]
        entries: list[tuple[tuple[str, ...], str | None]] = []
        for lineno, row in enumerate(rows, start=1):
            row = row + [""] * (len(header) - len(row))
            parts = tuple(row[i].strip() for i in tier_cols if row[i].strip())
            if not parts:
                raise ValueError(f"{name}: row {lineno} (id {row[0]!r}) has no tier names")
            entries.append((parts, row[0].strip() or None))
        entries.sort(key=lambda e: len(e[0]))  # stable: file order within a tier
        nodes: list[TopicNode] = []
        index: dict[tuple[str, ...], int] = {}
        for parts, source_id in entries:
            parent = index.get(parts[:-1]) if len(parts) > 1 else None
            if len(parts) > 1 and parent is None:
                raise ValueError(f"{name}: topic {join_path(parts)!r} (id {source_id}) has no parent row")
            index[parts] = len(nodes)
            nodes.append(TopicNode(len(nodes), parts, parent, source_id=source_id))
        return cls(nodes, name=name)

    # queries ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[TopicNode]:
        return iter(self.nodes)

    def __contains__(self, path: object) -> bool:
        if isinstance(path, str):
            try:
                return split_path(path) in self._by_path
            except ValueError:
                return False
        return isinstance(path, tuple) and path in self._by_path

    def node(self, path: str | tuple[str, ...]) -> TopicNode:
        parts = split_path(path) if isinstance(path, str) else path
        try:
            return self.nodes[self._by_path[parts]]
        except KeyError:
            raise KeyError(f"unknown topic {join_path(parts)!r} in taxonomy {self.name}") from None

    def children(self, node_id: int | None) -> list[int]:
        """Child ids of a node (``None``: the top-level topics)."""
        return list(self._children.get(node_id, []))

    def ancestors(self, node_id: int) -> list[int]:
        """Ids from the top-level ancestor down to the node itself."""
        chain: list[int] = []
        current: int | None = node_id
        while current is not None:
            chain.append(current)
            current = self.nodes[current].parent
        return chain[::-1]

    def at_level(self, level: int) -> list[TopicNode]:
        return [n for n in self.nodes if n.level == level]

    def leaves(self) -> list[TopicNode]:
        return [n for n in self.nodes if not self._children.get(n.id)]

    @property
    def depth(self) -> int:
        return max(n.level for n in self.nodes)

    def paths(self) -> list[str]:
        return [n.path for n in self.nodes]

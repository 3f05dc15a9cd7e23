from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from topicfeed.settings import DEFAULT_TAXONOMY
from topicfeed.taxonomy import Taxonomy, split_path


def test_iab_content_taxonomy(shared_data: Path) -> None:
    tax = Taxonomy.load(shared_data / "iab" / "content_taxonomy_3.1.tsv")
    assert len(tax) == 704
    assert tax.depth == 4
    assert Counter(n.level for n in tax) == {1: 37, 2: 323, 3: 275, 4: 69}
    node = tax.node("Attractions > Amusement and Theme Parks")
    assert node.source_id == "151" and node.level == 2
    assert tax.nodes[node.parent].path == "Attractions"
    # every node's parent is the node one tier up
    for n in tax:
        if n.parent is not None:
            assert tax.nodes[n.parent].parts == n.parts[:-1]


def test_mind_two_level_taxonomy(shared_data: Path) -> None:
    tax = Taxonomy.load(shared_data / "mind" / "taxonomy.tsv")
    assert len(tax.at_level(1)) == 15
    assert len(tax.at_level(2)) == 144
    assert "sports > baseball_mlb" in tax
    assert "category" not in tax  # the header row is not a topic


def test_plain_paths_file_adds_ancestors(tmp_path: Path) -> None:
    f = tmp_path / "paths.txt"
    f.write_text("Sports > Water Sports > Scuba Diving\nSports>Racing\n\nTravel\n")
    tax = Taxonomy.load(f)
    assert tax.paths() == ["Sports", "Sports > Water Sports", "Sports > Water Sports > Scuba Diving", "Sports > Racing", "Travel"]
    leaf = tax.node("Sports > Water Sports > Scuba Diving")
    assert [tax.nodes[i].name for i in tax.ancestors(leaf.id)] == ["Sports", "Water Sports", "Scuba Diving"]
    assert {tax.nodes[i].name for i in tax.children(None)} == {"Sports", "Travel"}
    assert {n.path for n in tax.leaves()} == {"Sports > Water Sports > Scuba Diving", "Sports > Racing", "Travel"}


def test_shipped_taxonomy_has_three_levels_and_a_few_hundred_nodes() -> None:
    tax = Taxonomy.load(DEFAULT_TAXONOMY)
    assert tax.depth == 3
    assert 200 <= len(tax) <= 400
    assert all(n.level == 3 for n in tax.leaves())


def test_bad_paths_and_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a topic path"):
        split_path("Sports >  > Racing")
    with pytest.raises(KeyError, match="unknown topic"):
        Taxonomy.from_paths(["a > b"]).node("a > c")
    empty = tmp_path / "empty.tsv"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="empty taxonomy"):
        Taxonomy.load(empty)
    orphan = tmp_path / "orphan.tsv"
    orphan.write_text("Unique ID\tParent\tName\tTier 1\tTier 2\n2\t1\tB\tA\tB\n")
    with pytest.raises(ValueError, match="has no parent row"):
        Taxonomy.load(orphan)

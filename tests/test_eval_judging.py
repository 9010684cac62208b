"""LLM judges against a real local chat-completions server (tests/openai_fixtures.py).

Both orders, ties, retries, timeouts, the cache, the budget stop, unparseable
replies and the pointwise rating API the curation module calls.
"""

from __future__ import annotations

import dataclasses
import doctest
import logging
import time

import pytest

import judging
from judging import JudgeFailure, JudgeRunError, Pair, Rating, judge_pairs, load_judge, rate_many


def _conn(fake, **extra):
    return dict(base_url=fake.base_url, api_key=fake.api_key, model=fake.model, **extra)


def _pairs(n: int) -> list[Pair]:
    # A is longer than B for even i, shorter for odd i (the fake prefers the longer answer)
    out = []
    for i in range(n):
        long, short = f"A detailed answer number {i} with several helpful sentences.", f"Short {i}."
        a, b = (long, short) if i % 2 == 0 else (short, long)
        out.append(Pair(id=f"p{i}", prompt=f"Question {i}?", output_a=a, output_b=b))
    return out


def test_parsers_and_helpers_doctests():
    from eval import files, human

    for mod in (judging.parsers, judging, files, human):
        result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0, mod.__name__


def test_both_orders_consistent_verdicts(fake_openai):
    run = judge_pairs(_pairs(6), "mtbench-pairwise", **_conn(fake_openai))
    assert [r.verdict for r in run.results] == ["win", "loss"] * 3
    assert all(r.consistent for r in run.results)
    # the judge saw each pair twice, with the answers swapped: the letter flips, the verdict does not
    first = run.results[0]
    assert [o["order"] for o in first.orders] == ["ab", "ba"]
    assert [o["raw"] for o in first.orders] == ["A", "B"]
    assert fake_openai.completions == 12
    shown = [b["messages"][-1]["content"] for b in fake_openai.bodies]
    pair0 = [s for s in shown if "Question 0?" in s]
    assert len(pair0) == 2
    assert sorted(s.index("A detailed") < s.index("Short 0.") for s in pair0) == [False, True]
    assert run.counts == {**run.counts, "win": 3, "loss": 3, "tie": 0, "consistent": 6, "inconsistent": 0}


def test_position_bias_becomes_inconsistent_tie(fake_openai):
    fake_openai.position_bias = 1.0  # always prefers whatever is shown first
    run = judge_pairs(_pairs(4), "mtbench-pairwise", **_conn(fake_openai))
    for r in run.results:
        assert [o["raw"] for o in r.orders] == ["A", "A"]
        assert [o["verdict"] for o in r.orders] == ["win", "loss"]  # flipped with the order
        assert r.verdict == "tie" and r.consistent is False
    assert run.counts["inconsistent"] == 4 and run.counts["tie"] == 4


def test_genuine_tie_is_consistent(fake_openai):
    run = judge_pairs([Pair("t", "Q?", "same length", "same length")], "lima-three-way", **_conn(fake_openai))
    r = run.results[0]
    assert r.verdict == "tie" and r.consistent is True
    assert "Neither is significantly better" in fake_openai.bodies[0]["messages"][0]["content"]


def test_retries_on_429_and_5xx(fake_openai):
    fake_openai.fail_first = 5  # 429, 500 and 503 drawn at random
    run = judge_pairs(_pairs(4), "mtbench-pairwise", **_conn(fake_openai, concurrency=1))
    assert run.counts["judged"] == 4
    assert fake_openai.requests == 8 + 5
    assert run.counts["http_attempts"] == 8 + 5 and run.counts["requests"] == 8


def test_retries_exhausted_is_a_counted_failure(fake_openai):
    fake_openai.error_rate = 1.0
    fake_openai.error_statuses = (503,)
    run = judge_pairs(_pairs(2), "mtbench-pairwise", **_conn(fake_openai, max_retries=2))
    assert [r.verdict for r in run.results] == [None, None]
    assert all("HTTP 503 after 3 attempts" in r.error for r in run.results)
    assert run.counts["failed"] == 2 and fake_openai.requests == 4 * 3


def test_timeout_is_retried(fake_openai):
    fake_openai.stall_first = 1
    fake_openai.stall_seconds = 1.5
    run = rate_many([("Q?", "An answer.")], **_conn(fake_openai, timeout=0.4))
    assert isinstance(run.results[0], Rating)
    assert run.counts["http_attempts"] == 2 and fake_openai.requests == 2


def test_cache_second_run_makes_no_requests(fake_openai, tmp_path):
    first = judge_pairs(_pairs(5), "mtbench-pairwise", cache_dir=tmp_path, **_conn(fake_openai))
    assert fake_openai.requests == 10
    fake_openai.reset()
    second = judge_pairs(_pairs(5), "mtbench-pairwise", cache_dir=tmp_path, **_conn(fake_openai))
    assert fake_openai.requests == 0
    assert second.counts["cached"] == 10 and second.counts["requests"] == 0
    assert [r.verdict for r in second.results] == [r.verdict for r in first.results]
    assert all(o["cached"] for r in second.results for o in r.orders)
    # another judge, or a changed output, is a different key
    changed = _pairs(5)
    changed[0].output_b += " (edited)"
    judge_pairs(changed, "mtbench-pairwise", cache_dir=tmp_path, **_conn(fake_openai))
    assert fake_openai.requests == 2


def test_budget_stop_and_resume(fake_openai, tmp_path):
    fake_openai.usage = (1000, 100)  # 0.0011 USD per request at 1 USD / M tokens
    conn = _conn(fake_openai, price_input=1.0, price_output=1.0, concurrency=1)
    run = judge_pairs(_pairs(5), "mtbench-pairwise", cache_dir=tmp_path, max_cost=0.005, **conn)
    assert run.budget_exhausted
    assert fake_openai.requests == 5  # the 5th request crossed 0.005; nothing after it
    assert run.cost == pytest.approx(5 * 0.0011)
    assert run.tokens == {"prompt": 5000, "completion": 500}
    verdicts = [r.verdict for r in run.results]
    assert verdicts[:2] == ["win", "loss"] and verdicts[2:] == [None, None, None]
    assert run.counts["skipped_budget"] == 3 and run.counts["judged"] == 2
    assert all("budget" in r.error for r in run.results[2:])
    # an interrupted run resumes: the 5 answered orders come from the cache
    fake_openai.reset()
    rest = judge_pairs(_pairs(5), "mtbench-pairwise", cache_dir=tmp_path, **conn)
    assert fake_openai.requests == 5 and rest.counts["cached"] == 5 and rest.counts["judged"] == 5


def test_unparseable_replies_counted_retried_and_fail_the_run(fake_openai):
    fake_openai.malformed_rate = 1.0
    with pytest.raises(JudgeRunError, match="no parseable verdict") as info:
        judge_pairs(_pairs(3), "mtbench-pairwise", **_conn(fake_openai))
    run = info.value.run
    assert run.counts["unparseable"] == 3 and run.counts["judged"] == 0
    assert run.counts["unparseable_replies"] == 12  # 3 pairs x 2 orders x (1 + 1 parse retry)
    assert all(r.parse_failures == 4 and r.error.startswith("unparseable") for r in run.results)
    assert run.results[0].orders[0]["reply"] == "I am not sure which is better."


def test_some_unparseable_below_threshold(fake_openai):
    fake_openai.malformed_rate = 0.3
    run = judge_pairs(_pairs(20), "mtbench-pairwise", max_unparseable=1.0, **_conn(fake_openai, concurrency=1))
    c = run.counts
    assert c["unparseable_replies"] > 0
    assert c["judged"] + c["unparseable"] == 20
    # each unparseable reply is asked once more; an order unparseable twice is given up
    given_up = sum(1 for r in run.results for o in r.orders if o["error"])
    assert c["requests"] == 40 + c["unparseable_replies"] - given_up


def test_rate_many_api(fake_openai):
    fake_openai.reply = lambda messages: "Helpful and correct.\nRating: [[4]]"
    items = [("How do I boil an egg?", "Put it in boiling water for 8 minutes."), ("Hi", "Hello!")]
    run = rate_many(items, "quality-rating", **_conn(fake_openai))
    assert run.results == [Rating(4, "Helpful and correct."), Rating(4, "Helpful and correct.")]
    assert run.counts["rated"] == 2 and run.tokens["prompt"] > 0
    sent = [b["messages"] for b in fake_openai.bodies]
    assert all(m[0]["role"] == "system" and "LIMA" in m[0]["content"] for m in sent)
    assert sum("Put it in boiling water" in m[1]["content"] for m in sent) == 1


def test_rate_many_failures_are_never_none(fake_openai):
    replies = iter(["Rating: [[5]]", "no idea", "no idea", "Rating: [[9]]", "Rating: [[9]]"])
    fake_openai.reply = lambda messages: next(replies)
    run = rate_many([("q1", "r1"), ("q2", "r2"), ("q3", "r3")], concurrency=1, max_unparseable=1.0, **_conn(fake_openai))
    assert isinstance(run.results[0], Rating) and run.results[0].score == 5
    assert isinstance(run.results[1], JudgeFailure) and "no rating" in run.results[1].error
    assert isinstance(run.results[2], JudgeFailure) and "outside 1–5" in run.results[2].error
    assert run.counts["failed"] == 2 and run.counts["unparseable_replies"] == 4


def test_concurrency_overlaps_requests(fake_openai):
    fake_openai.latency = 0.1
    t0 = time.perf_counter()
    rate_many([("q", f"r{i}") for i in range(16)], concurrency=8, **_conn(fake_openai))
    took = time.perf_counter() - t0
    assert fake_openai.max_in_flight >= 4
    assert took < 16 * 0.1 * 0.6


def test_bad_key_fails_fast_without_leaking_it(fake_openai, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "sk-wrong-" + "7" * 24
    with pytest.raises(judging.FatalBackendError, match="refused the API key") as info:
        rate_many([("q", "r")], **{**_conn(fake_openai), "api_key": secret})
    assert secret not in str(info.value)
    assert secret not in caplog.text


def test_missing_model_and_key_reported(monkeypatch):
    for name in ("EVAL_JUDGE_MODEL", "EVAL_JUDGE_BASE_URL", "OPENAI_BASE_URL", "EVAL_JUDGE_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="no judge model"):
        rate_many([("q", "r")])
    with pytest.raises(judging.FatalBackendError, match="no API key"):
        rate_many([("q", "r")], model="gpt-4o-mini")


def test_every_shipped_judge_config_is_valid():
    names = judging.list_judges()
    assert {"lima-three-way", "mtbench-pairwise", "mtbench-reference", "quality-rating"} <= set(names)
    for name in names:
        cfg = load_judge(name)
        for key, text in cfg.choices.items():
            assert str(cfg.parse(text)) == key
        header = (cfg.path / "config.yaml").read_text().splitlines()[0]
        assert header.startswith("# "), f"{name}: config.yaml should begin with the command that uses it"


def test_bad_judge_config_reports_every_problem(tmp_path):
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "config.yaml").write_text(
        "name: other\nmode: pairwise\nparser: nope\nchoices: {A: x}\ncolour: blue\ndescription: d\n"
    )
    (bad / "prompt.txt").write_text("Compare {output_a}")
    with pytest.raises(ValueError) as info:
        load_judge(bad)
    assert "unknown keys ['colour']" in str(info.value)
    (bad / "config.yaml").write_text("name: other\nmode: pairwise\nparser: nope\nchoices: {A: x}\ndescription: d\n")
    with pytest.raises(ValueError) as info:
        load_judge(bad)
    msg = str(info.value)
    for part in ("differs from the folder name", "parser 'nope' unknown", "lacks placeholders", "choices must have"):
        assert part in msg


def test_reference_judge_needs_references(fake_openai):
    with pytest.raises(ValueError, match="needs a reference answer"):
        judge_pairs(_pairs(2), "mtbench-reference", **_conn(fake_openai))
    pairs = _pairs(2)
    for p in pairs:
        p.reference = "The reference {answer} with braces."
    run = judge_pairs(pairs, "mtbench-reference", **_conn(fake_openai))
    assert run.counts["judged"] == 2
    assert "The reference {answer} with braces." in fake_openai.bodies[0]["messages"][-1]["content"]


def test_local_transformers_judge_constrained_and_free(tiny_model_dir, compute_dtype):
    items = [("What is 2 + 2?", "4"), ("Name a colour.", "Blue is a colour."), ("Say hi.", "Hi!")]
    run = rate_many(items, kind="transformers", model=str(tiny_model_dir), decoding="constrained")
    assert all(isinstance(r, Rating) and 1 <= r.score <= 5 for r in run.results)
    assert "log-probability" in run.results[0].rationale
    assert run.counts["requests"] == 3 and run.cost == 0 and run.tokens["prompt"] > 0
    # the same tiny model decoding freely writes noise: every item fails visibly, none gets a made-up score
    with pytest.raises(JudgeRunError) as info:
        short = dataclasses.replace(load_judge("quality-rating"), max_tokens=8)
        rate_many(items, short, kind="transformers", model=str(tiny_model_dir), decoding="generate")
    failed = info.value.run
    assert all(isinstance(r, JudgeFailure) and r.error.startswith("unparseable") for r in failed.results)
    pairs = [Pair("p", "Q?", "a long answer " * 5, "short")]
    pair_run = judge_pairs(pairs, "mtbench-pairwise", kind="transformers", model=str(tiny_model_dir))
    (result,) = pair_run.results
    assert result.verdict in ("win", "tie", "loss") and [o["raw"] for o in result.orders] != [None, None]


def test_empty_overrides_mean_not_given(fake_openai, monkeypatch):
    for k, v in fake_openai.env().items():
        monkeypatch.setenv(k, v)
    run = rate_many([("q", "r")], base_url="", model="", max_cost=0)  # the curation config's "unset" values
    assert isinstance(run.results[0], Rating) and fake_openai.requests == 1


def test_fake_server_speaks_the_protocol_to_the_openai_client(fake_openai):
    from openai import OpenAI

    client = OpenAI(base_url=fake_openai.base_url, api_key=fake_openai.api_key, max_retries=0)
    assert [m.id for m in client.models.list()] == [fake_openai.model]
    fake_openai.reply = lambda messages: "echo: " + messages[-1]["content"]
    resp = client.chat.completions.create(model=fake_openai.model, messages=[{"role": "user", "content": "hi"}])
    assert resp.choices[0].message.content == "echo: hi" and resp.usage.total_tokens > 0
    assert fake_openai.requests == 1 and fake_openai.bodies[0]["messages"][0]["content"] == "hi"


# ------------------------------------------------------------------ issue 12: unparseable replies, costs


def test_unparseable_is_repaired_with_a_varied_request_then_cached(fake_openai, tmp_path):
    """An unparseable reply is asked again with a different request (a reminder of the format), never the identical
    one; after the repairs "no verdict" is cached, so a re-run makes no request unless asked to."""
    fake_openai.malformed_rate = 1.0
    conn = _conn(fake_openai, concurrency=1, max_unparseable=1.0)
    run = judge_pairs(_pairs(2), "mtbench-pairwise", cache_dir=tmp_path, **conn)
    assert fake_openai.requests == 2 * 2 * 2 and run.counts["unparseable"] == 2
    first, repair = fake_openai.bodies[0]["messages"], fake_openai.bodies[1]["messages"]
    assert first != repair and "Reminder" in repair[-1]["content"] and "[[A]]" in repair[-1]["content"]
    assert repair[-1]["content"].startswith(first[-1]["content"])  # the same question, with the reminder added
    assert all(r.status == "unparseable" for r in run.results)
    fake_openai.reset()
    again = judge_pairs(_pairs(2), "mtbench-pairwise", cache_dir=tmp_path, **conn)
    assert fake_openai.requests == 0 and again.counts["cached"] == 4
    assert [r.status for r in again.results] == ["unparseable", "unparseable"]
    assert [r.parse_failures for r in again.results] == [4, 4]  # cumulative, from the cache
    assert all(o["cached"] and o["reply"] == "I am not sure which is better." for r in again.results for o in r.orders)
    # asked again on request; a judge that now answers gives verdicts, which replace "no verdict" in the cache
    fake_openai.malformed_rate = 0.0
    fixed = judge_pairs(_pairs(2), "mtbench-pairwise", cache_dir=tmp_path, retry_unparseable=True, **conn)
    assert fake_openai.requests == 4 and fixed.counts["judged"] == 2
    fake_openai.reset()
    judge_pairs(_pairs(2), "mtbench-pairwise", cache_dir=tmp_path, **conn)
    assert fake_openai.requests == 0


def test_rerun_over_a_mixed_cached_set_makes_no_requests(fake_openai, tmp_path):
    fake_openai.malformed_rate = 0.3
    conn = _conn(fake_openai, max_unparseable=1.0)
    first = judge_pairs(_pairs(20), "mtbench-pairwise", cache_dir=tmp_path, **conn)
    assert first.counts["unparseable"] > 0 and first.counts["judged"] > 0
    fake_openai.reset()
    again = judge_pairs(_pairs(20), "mtbench-pairwise", cache_dir=tmp_path, **conn)
    assert fake_openai.requests == 0
    assert [(r.verdict, r.status) for r in again.results] == [(r.verdict, r.status) for r in first.results]


def test_cost_and_tokens_are_cumulative_cached_or_not(fake_openai, tmp_path):
    fake_openai.usage = (1000, 100)
    conn = _conn(fake_openai, price_input=1.0, price_output=1.0)
    first = judge_pairs(_pairs(3), "mtbench-pairwise", cache_dir=tmp_path, **conn)
    assert first.cost == pytest.approx(6 * 0.0011) == first.cost_total
    assert [r.cost for r in first.results] == pytest.approx([0.0022] * 3) and [r.spent for r in first.results] == pytest.approx([0.0022] * 3)
    again = judge_pairs(_pairs(3), "mtbench-pairwise", cache_dir=tmp_path, **conn)
    assert again.cost == 0 and again.cost_total == pytest.approx(first.cost_total)  # spent now: 0; the judgments cost as much
    assert [r.cost for r in again.results] == pytest.approx([0.0022] * 3) and [r.spent for r in again.results] == [0, 0, 0]
    assert [r.tokens for r in again.results] == [{"prompt": 2000, "completion": 200}] * 3
    ratings = rate_many([("q", "r")], cache_dir=tmp_path, **conn)
    cached = rate_many([("q", "r")], cache_dir=tmp_path, **conn)
    assert ratings.results[0].cost > 0 and cached.results[0].spent == 0
    assert cached.results[0].cost == pytest.approx(ratings.results[0].cost)


def test_outcomes_are_typed(fake_openai):
    from judging import Status

    fake_openai.error_rate = 1.0
    fake_openai.error_statuses = (400,)
    run = judge_pairs(_pairs(1), "mtbench-pairwise", **_conn(fake_openai))
    (r,) = run.results
    assert r.status == Status.FAILED and r.verdict is None and "HTTP 400" in r.error
    assert [o["status"] for o in r.orders] == ["failed", "failed"]
    assert run.counts["failed"] == 1 and fake_openai.requests == 2  # a 400 is not retried


# ------------------------------------------------------------------ issue 12: verdict scales


def _scaled_pairs() -> list[Pair]:
    much = "A thorough answer with many helpful details. " * 4
    bit = "A short answer with one detail."
    return [Pair("strong", "Q1?", much, "Brief."), Pair("slight", "Q2?", bit + " And a little more.", bit),
            Pair("lost", "Q3?", "Brief.", much)]


def test_arena_hard_five_point_scale_weighs_strong_wins(fake_openai, tmp_path):
    import shutil

    import yaml

    from eval import stats

    run = judge_pairs(_scaled_pairs(), "arena-hard-5", **_conn(fake_openai))
    strong, slight, lost = run.results
    assert [o["raw"] for o in strong.orders] == ["A>>B", "B>>A"] and strong.verdict == "win" and strong.weight == 3
    assert [o["raw"] for o in slight.orders] == ["A>B", "B>A"] and slight.verdict == "win" and slight.weight == 1
    assert lost.verdict == "loss" and lost.weight == 3 and all(o["strong"] for o in lost.orders)
    assert "[[A>>B]]" in fake_openai.bodies[0]["messages"][0]["content"]
    verdicts = [r.verdict for r in run.results]
    summary = stats.summarize(verdicts, weights=[r.weight for r in run.results])
    assert summary["win_rate"] == pytest.approx((3 + 1 + 0) / 7) and summary["weighted"]
    # the weight is configurable: 1 counts every win alike
    folder = tmp_path / "arena-even"
    shutil.copytree(judging.JUDGES_DIR / "arena-hard-5", folder)
    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    (folder / "config.yaml").write_text(yaml.safe_dump({**cfg, "name": "arena-even", "strong_weight": 1}))
    even = judge_pairs(_scaled_pairs(), folder, **_conn(fake_openai))
    assert [r.weight for r in even.results] == [1, 1, 1]


def test_logprob_preference_from_the_verdict_token(fake_openai):
    from openai_fixtures import preference_first

    pairs = _scaled_pairs()
    run = judge_pairs(pairs, "logprob-preference", **_conn(fake_openai))
    body = fake_openai.bodies[0]
    assert body["logprobs"] is True and body["top_logprobs"] == 5 and body["max_tokens"] == 1
    for p, r in zip(pairs, run.results):
        ab = preference_first(p.output_a, p.output_b)
        ba = 1 - preference_first(p.output_b, p.output_a)
        assert [o["prob_source"] for o in r.orders] == ["logprobs", "logprobs"]
        assert [o["prob"] for o in r.orders] == pytest.approx([ab, ba], abs=1e-6)
        assert r.score == pytest.approx((ab + ba) / 2, abs=1e-6)
    assert 0.5 < run.results[1].score < run.results[0].score < 1  # a small length gap, a small preference
    # an endpoint without logprobs: the parsed letter counts 1 or 0
    fake_openai.logprobs = False
    plain = judge_pairs(pairs, "logprob-preference", **_conn(fake_openai))
    assert [o["prob_source"] for r in plain.results for o in r.orders] == ["verdict"] * 6
    assert [r.score for r in plain.results] == [1.0, 1.0, 0.0]


def test_logprob_preference_on_a_local_model(tiny_model_dir):
    (r,) = judge_pairs([Pair("p", "Q?", "An answer.", "Another answer.")], "logprob-preference", kind="transformers",
                       model=str(tiny_model_dir)).results
    assert [o["prob_source"] for o in r.orders] == ["logprobs", "logprobs"]
    assert 0 < r.score < 1 and r.score == pytest.approx(sum(o["prob"] for o in r.orders) / 2)

"""Benchmarks of eval: judging concurrency, the judgment cache, batched generation.

    python bench/bench_eval.py [--pairs 200] [--latency 0.2] [--concurrency 32] [--prompts 48]

1. Judge N pairs in both orders against a local chat-completions server
   (tests/openai_fixtures.py: a real HTTP server) that answers after a fixed
   latency: sequentially (concurrency 1), then concurrently. Target: ≥ 10×.
2. Re-run the concurrent judging with the cache: target zero requests.
3. Generate answers with the tiny random Llama one prompt at a time, then
   in batches (left padding). Target: ≥ 3×.

Prints the ratios and writes them to bench/results/eval.json. Baselines are
measured in the same run, on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def _pairs(n: int):
    from judging import Pair

    return [Pair(f"p{i}", f"Question {i}?", f"A fairly detailed answer {i}." * (1 + i % 3), f"Answer {i}.")
            for i in range(n)]


def bench_judging(n_pairs: int, latency: float, concurrency: int) -> dict:
    from openai_fixtures import FakeOpenAI

    from judging import judge_pairs

    fake = FakeOpenAI().start()
    fake.latency = latency
    conn = dict(base_url=fake.base_url, api_key=fake.api_key, model=fake.model)
    try:
        pairs = _pairs(n_pairs)
        t0 = time.perf_counter()
        seq = judge_pairs(pairs, "mtbench-pairwise", concurrency=1, **conn)
        t_seq = time.perf_counter() - t0
        seq_requests = fake.requests
        fake.reset()
        with tempfile.TemporaryDirectory() as cache:
            t0 = time.perf_counter()
            conc = judge_pairs(pairs, "mtbench-pairwise", concurrency=concurrency, cache_dir=Path(cache), **conn)
            t_conc = time.perf_counter() - t0
            conc_requests, in_flight = fake.requests, fake.max_in_flight
            fake.reset()
            t0 = time.perf_counter()
            again = judge_pairs(pairs, "mtbench-pairwise", concurrency=concurrency, cache_dir=Path(cache), **conn)
            t_cached = time.perf_counter() - t0
            cached_requests = fake.requests
    finally:
        fake.stop()
    same = [r.verdict for r in seq.results] == [r.verdict for r in conc.results] == [r.verdict for r in again.results]
    return {
        "pairs": n_pairs, "requests_per_run": seq_requests, "server_latency_s": latency, "concurrency": concurrency,
        "sequential_s": round(t_seq, 2), "concurrent_s": round(t_conc, 2),
        "speedup": round(t_seq / t_conc, 1), "target_speedup": 10, "max_in_flight": in_flight,
        "concurrent_requests": conc_requests,
        "cached_rerun_s": round(t_cached, 3), "cached_rerun_requests": cached_requests,
        "same_verdicts": same,
    }


def bench_generation(n_prompts: int, max_new_tokens: int, batch_size: int) -> dict:
    import torch

    from eval.config import GenerateConfig
    from eval.generate import _load, end_of_turn_ids, generate_batch
    from finetune.tiny import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_model(Path(tmp) / "tiny")
        cfg = GenerateConfig(prompts="-", out="-", model=str(model_dir), max_new_tokens=max_new_tokens,
                             batch_size=batch_size)
        model, tokenizer, _, _, _ = _load(cfg)
        eos = end_of_turn_ids(tokenizer, model)
        # no early stop: every answer runs to max_new_tokens, so both modes do the same work
        eos_never = [tokenizer.pad_token_id]
        prompts = [f"Explain item {i} of the list in a few sentences: " + "detail " * (i % 7) for i in range(n_prompts)]
        generate_batch(model, tokenizer, prompts[:2], cfg, eos_never)  # warm-up
        t0 = time.perf_counter()
        singles = [generate_batch(model, tokenizer, [p], cfg, eos_never)[0][0] for p in prompts]
        t_single = time.perf_counter() - t0
        t0 = time.perf_counter()
        batched = []
        for i in range(0, n_prompts, batch_size):
            batched += generate_batch(model, tokenizer, prompts[i:i + batch_size], cfg, eos_never)[0]
        t_batch = time.perf_counter() - t0
    return {
        "prompts": n_prompts, "max_new_tokens": max_new_tokens, "batch_size": batch_size,
        "torch_threads": torch.get_num_threads(), "end_of_turn_ids": eos,
        "one_at_a_time_s": round(t_single, 2), "batched_s": round(t_batch, 2),
        "speedup": round(t_single / t_batch, 1), "target_speedup": 3,
        "same_outputs": singles == batched,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=200)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--prompts", type=int, default=48)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "eval.json"))
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    judging = bench_judging(args.pairs, args.latency, args.concurrency)
    print(f"judging {judging['pairs']} pairs x 2 orders at {args.latency * 1000:.0f} ms latency: "
          f"sequential {judging['sequential_s']} s, concurrent ({args.concurrency}) {judging['concurrent_s']} s "
          f"-> {judging['speedup']}x (target >= 10x)")
    print(f"cached re-run: {judging['cached_rerun_requests']} requests in {judging['cached_rerun_s']} s (target 0)")
    gen = bench_generation(args.prompts, args.max_new_tokens, args.batch_size)
    print(f"generation, tiny model, {gen['prompts']} prompts x {gen['max_new_tokens']} tokens: one at a time "
          f"{gen['one_at_a_time_s']} s, batched ({gen['batch_size']}) {gen['batched_s']} s -> {gen['speedup']}x "
          f"(target >= 3x); same outputs: {gen['same_outputs']}")
    result = {
        "judging": judging, "generation": gen,
        "targets_met": {
            "judging_speedup": judging["speedup"] >= 10,
            "cached_rerun_no_requests": judging["cached_rerun_requests"] == 0,
            "generation_speedup": gen["speedup"] >= 3,
        },
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

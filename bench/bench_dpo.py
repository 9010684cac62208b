"""Benchmark of DPO with QLoRA against SFT with QLoRA on the same model and batch: peak memory and speed.

    python bench/bench_dpo.py [--pairs 48] [--batch-size 4] [--steps 12] [--hidden 256] [--layers 8]

One tiny random Llama (built locally, linear layers dominating its size as in a real LLM) and one set of
LIMA-shaped preference pairs (a long tail of answer lengths). Two arms, each in a fresh process of this
script, through ``python -m finetune``'s ``run()`` with the same recipe, 4-bit NF4 base, LoRA, batch size and
steps:

- ``sft``: supervised fine-tuning on prompt + chosen answer (``method: sft``, padded batches);
- ``dpo``: ``method: dpo`` on the pairs (TRL's DPOTrainer: every step runs the policy on the chosen and the
  rejected answer; the reference's log-probabilities, the adapter disabled, are computed once before
  training, ``dpo_precompute_ref: true``, the default);
- ``dpo_ref_each_step``: the same with ``dpo_precompute_ref: false`` (a reference forward in every step).

Measured per arm: peak resident set size of the process (``ru_maxrss``: loading included) and the
training loop's peak RSS above its start (psutil, sampled every 5 ms), and pairs (examples) per second of
the loop; and the seconds of the whole run (data, model, trainer and loop): TRL precomputes the reference's
log-probabilities when the trainer is built, so that pass is in the run's time and the peak RSS, not the
loop's. Torch runs on one thread. Target: DPO's peak RSS <= 1.3x SFT's. Writes bench/results/dpo.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RECIPE = REPO / "finetune" / "recipes" / "dpo-tiny-cpu.yaml"
WORDS = ("the a river stone model data light sound cloud tree answer question simple careful build test code "
         "line file step value").split()


def make_inputs(folder: Path, n: int, hidden: int, layers: int, seed: int = 0) -> tuple[Path, Path, Path]:
    from contract.io import write_jsonl
    from finetune.tiny import build_tiny_model

    model = build_tiny_model(folder / "model", hidden_size=hidden, num_layers=layers, vocab_size=1024)
    rng = random.Random(seed)
    pairs, sft = [], []
    for i in range(n):
        q = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 20))).capitalize() + "?"
        words = lambda: " ".join(rng.choice(WORDS) for _ in range(int(rng.lognormvariate(3.5, 0.7))))  # noqa: E731
        chosen, rejected = words(), words()
        pairs.append({"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": chosen}],
                      "rejected": [{"role": "assistant", "content": rejected}]})
        sft.append({"id": f"ex{i}", "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": chosen}],
                    "source": "bench", "meta": {}})
    write_jsonl(folder / "pairs.jsonl", pairs)
    write_jsonl(folder / "sft.jsonl", sft)
    return model, folder / "pairs.jsonl", folder / "sft.jsonl"


def run_arm(arm: str, model: str, data: str, out: str, batch_size: int, steps: int) -> dict:
    """In a fresh process: train, report peak memory and loop speed as JSON on stdout."""
    import psutil
    import torch
    from transformers import TrainerCallback

    from finetune.config import load
    from finetune.train import run

    torch.set_num_threads(1)
    proc = psutil.Process()
    loop = {"peak": 0, "start": 0, "t0": 0.0, "t1": 0.0}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            loop["peak"] = max(loop["peak"], proc.memory_info().rss)
            time.sleep(0.005)

    class Timer(TrainerCallback):
        def on_train_begin(self, *a, **k):
            loop["start"] = proc.memory_info().rss
            loop["t0"] = time.perf_counter()
            threading.Thread(target=sample, daemon=True).start()

        def on_train_end(self, *a, **k):
            loop["t1"] = time.perf_counter()
            stop.set()

    method = "sft" if arm == "sft" else "dpo"
    cfg = load(RECIPE, model=model, data=data, output_dir=out, method=method, batching="padded",
               batch_size=batch_size, max_steps=steps, dev_size=0.0, save_steps=10**6, logging_steps=steps,
               tensorboard=False, dpo_precompute_ref=arm != "dpo_ref_each_step")
    started = time.perf_counter()
    run(cfg, callbacks=(Timer(),))
    run_seconds = time.perf_counter() - started
    seconds = loop["t1"] - loop["t0"]
    return {"arm": arm, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "loop_peak_above_start_mb": (loop["peak"] - loop["start"]) / 2**20, "loop_seconds": seconds,
            "examples_per_second": steps * batch_size / seconds, "run_seconds": run_seconds}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=48)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--arm", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.arm:  # a child process
        print(json.dumps(run_arm(args.arm, args.model, args.data, args.out, args.batch_size, args.steps)))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-dpo-") as tmp:
        model, pairs, sft = make_inputs(Path(tmp), args.pairs, args.hidden, args.layers)
        results = {}
        env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
        for arm, data in (("sft", sft), ("dpo", pairs), ("dpo_ref_each_step", pairs)):
            cmd = [sys.executable, __file__, "--arm", arm, "--model", str(model), "--data", str(data),
                   "--out", str(Path(tmp) / arm), "--batch-size", str(args.batch_size), "--steps", str(args.steps)]
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
            if done.returncode:
                print(done.stderr[-3000:], file=sys.stderr)
                return 1
            results[arm] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{arm}: peak RSS {results[arm]['peak_rss_mb']:.0f} MB, loop +{results[arm]['loop_peak_above_start_mb']:.0f} MB, "
                  f"{results[arm]['examples_per_second']:.2f} examples/s in the loop, run {results[arm]['run_seconds']:.0f} s",
                  flush=True)
    ratio = results["dpo"]["peak_rss_mb"] / results["sft"]["peak_rss_mb"]
    summary = {"results": results, "dpo_over_sft_peak_rss": round(ratio, 3),
               "dpo_ref_each_step_over_sft_peak_rss": round(results["dpo_ref_each_step"]["peak_rss_mb"]
                                                            / results["sft"]["peak_rss_mb"], 3),
               "dpo_over_sft_loop_peak": round(results["dpo"]["loop_peak_above_start_mb"]
                                               / max(results["sft"]["loop_peak_above_start_mb"], 1e-9), 3),
               "target": "dpo peak RSS <= 1.3x sft", "met": ratio <= 1.3,
               "settings": vars(args) | {"model": f"tiny Llama, hidden {args.hidden}, {args.layers} layers, vocab 1024"},
               "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_average": os.getloadavg()}}
    out = REPO / "bench" / "results" / "dpo.json"
    out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"DPO / SFT peak RSS: {ratio:.2f}x (target <= 1.3x) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

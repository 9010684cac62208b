"""Generation through a QLoRA adapter against the base model: time per generated token.

    python bench/bench_adapter.py [--model smollm2-135m-instruct] [--tokens 64] [--batch 8] [--rounds 2]

A LoRA adapter (r 16, all linear layers, random non-zero weights so that it matters) is saved as a QLoRA run
folder (NF4 base, double quantization), then greedy generation of exactly ``--tokens`` new tokens for
``--batch`` prompts is timed with each way of loading it:

- ``base``: the base model alone, as ``eval generate`` loads it (the baseline);
- ``qlora_merged``: what ``eval generate --adapter RUN`` loads now: the base quantized to NF4 as in training,
  dequantized, the adapter merged in (``contract.models.load_for_inference``). Target: <= 1.5x the base;
- ``qlora_nf4_unmerged``: the training view, the 4-bit base with the adapter as a separate module
  (bitsandbytes dequantizes every weight at every token);
- ``lora_unmerged_fp``: what ``eval generate`` did before: the unquantized base plus the unmerged adapter (also
  the wrong weights: not the NF4 ones the adapter was trained on).

Arms alternate over ``--rounds`` and the fastest round of each counts; ratios are against ``base`` in the same
run. Writes bench/results/adapter.json with the machine and the load average.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PROMPTS = ["Give three tips for staying healthy.", "Explain what a hash table is.",
           "Write a haiku about rivers.", "What is the capital of France?",
           "How do I reverse a list in Python?", "Why is the sky blue?",
           "Summarize the plot of Hamlet in two sentences.", "List the planets of the solar system."]


def make_run(model: str, folder: Path) -> Path:
    """A QLoRA run folder as python -m finetune leaves it: the adapter, config.yaml, provenance.json."""
    import torch
    from peft import LoraConfig, get_peft_model

    from contract.models import compute_dtype, dtype_name, load_causal_lm, load_tokenizer

    torch.manual_seed(0)
    base = load_causal_lm(model, dtype=torch.float32)
    peft = get_peft_model(base, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                           init_lora_weights=False, task_type="CAUSAL_LM"))
    peft.save_pretrained(folder)
    load_tokenizer(model).save_pretrained(folder)
    (folder / "config.yaml").write_text(f"model: {model}\nquantization: nf4\ndouble_quant: true\n")
    (folder / "provenance.json").write_text(json.dumps({"compute_dtype": dtype_name(compute_dtype("auto")),
                                                        "quantization": "nf4"}))
    return folder


def load_arm(arm: str, model: str, run_dir: Path):
    from peft import PeftModel
    from transformers import BitsAndBytesConfig

    from contract.models import compute_dtype, load_causal_lm, load_for_inference

    dtype = compute_dtype("auto")
    if arm == "base":
        return load_for_inference(model, dtype=dtype)
    if arm == "qlora_merged":
        return load_for_inference(model, run_dir, dtype=dtype)
    if arm == "qlora_nf4_unmerged":
        bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype,
                                 bnb_4bit_use_double_quant=True)
        base = load_causal_lm(model, dtype=dtype, quantization_config=bnb, device_map={"": "cpu"})
        return PeftModel.from_pretrained(base, run_dir).eval()
    if arm == "lora_unmerged_fp":
        return PeftModel.from_pretrained(load_causal_lm(model, dtype=dtype), run_dir).eval()
    raise ValueError(arm)


def time_arm(model_obj, tokenizer, batch: int, tokens: int) -> float:
    """Seconds per generated token (greedy, exactly ``tokens`` new tokens per prompt, left-padded batch)."""
    import torch

    texts = [tokenizer.apply_chat_template([{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
                                           add_generation_prompt=True, tokenize=False) for i in range(batch)]
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    kwargs = dict(do_sample=False, max_new_tokens=tokens, min_new_tokens=tokens, pad_token_id=tokenizer.pad_token_id,
                  temperature=None, top_p=None, top_k=None)
    with torch.inference_mode():
        model_obj.generate(**enc, **{**kwargs, "max_new_tokens": 4, "min_new_tokens": 4})  # warm-up
        t0 = time.perf_counter()
        out = model_obj.generate(**enc, **kwargs)
        took = time.perf_counter() - t0
    assert out.shape[1] - enc["input_ids"].shape[1] == tokens
    return took / (batch * tokens)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--arms", default="base,qlora_merged,qlora_nf4_unmerged,lora_unmerged_fp")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "adapter.json"))
    args = p.parse_args(argv)

    from transformers import AutoTokenizer

    from contract.models import configure_threads, describe_model

    threads = configure_threads()
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    load_start = os.getloadavg()[0]
    best: dict[str, float] = {}
    load_seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = make_run(args.model, Path(tmp) / "run")
        tokenizer = AutoTokenizer.from_pretrained(run_dir)
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        for r in range(args.rounds):
            for arm in arms if r % 2 == 0 else arms[::-1]:
                t0 = time.perf_counter()
                model_obj = load_arm(arm, args.model, run_dir)
                load_seconds[arm] = round(time.perf_counter() - t0, 2)
                s = time_arm(model_obj, tokenizer, args.batch, args.tokens)
                best[arm] = min(best.get(arm, s), s)
                print(f"round {r + 1} {arm:20s} {1000 * s:8.2f} ms/token  (load {load_seconds[arm]:.1f} s)",
                      flush=True)
                del model_obj
                gc.collect()
    base = best.get("base")
    result = {
        "model": describe_model(args.model), "batch": args.batch, "new_tokens": args.tokens, "rounds": args.rounds,
        "threads": threads, "ms_per_token": {a: round(1000 * s, 3) for a, s in best.items()},
        "ratio_to_base": {a: round(s / base, 3) for a, s in best.items()} if base else {},
        "target": "qlora_merged <= 1.5 x base",
        "machine": {"cpus": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)), "platform": platform.platform(),
                    "python": platform.python_version(), "load_average_start": round(load_start, 2),
                    "load_average_end": round(os.getloadavg()[0], 2)},
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result["ratio_to_base"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

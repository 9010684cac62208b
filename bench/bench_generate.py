"""Benchmark: generation throughput, vLLM's offline engine against transformers' batched generate, on a GPU.

    python bench/bench_generate.py [--shape qwen2-0.5b] [--prompts 256] [--max-new-tokens 256] [--batch-size 32]

Both engines decode the same prompts greedily with the end of sequence ignored (``min_new_tokens`` /
``ignore_eos``), so both generate exactly prompts × max-new-tokens tokens; the figure is generated tokens per
second, and the result is the ratio vLLM / HF (target ≥ 10×; the issue measured HF generate at 585 tokens/s for
a 0.5B model at batch 32 on an H200). The model is random-init with a real model's shapes (built locally, no
Hub: the tokenizer is the tests' locally trained one with a ChatML template), in the compute dtype (bf16).
Then ``python -m eval generate --backend vllm`` runs on a few prompts, to check the backend end to end.

Needs a CUDA GPU and ``pip install vllm``; without them it says so and exits 0 (nothing measured). Writes
bench/results/generate.json. Baselines are measured in the same run, on the same machine.
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

SHAPES = {
    # Qwen2.5-0.5B-Instruct's dimensions
    "qwen2-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                       num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768,
                       tie_word_embeddings=True),
    # SmolLM2-135M's dimensions (a quick check)
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, vocab_size=49152, max_position_embeddings=8192,
                         tie_word_embeddings=True),
}


def build_model(shape: str, folder: Path) -> Path:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from finetune.tiny import build_tokenizer

    tokenizer = build_tokenizer()
    cfg = Qwen2Config(**SHAPES[shape], bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id, dtype="bfloat16")
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def prompts(n: int) -> list[str]:
    return [f"Explain item {i} of the list in a few sentences: " + "detail " * (i % 13) for i in range(n)]


def bench_hf(folder: Path, texts: list[str], max_new_tokens: int, batch_size: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).to("cuda").eval()
    rendered = [tok.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True, tokenize=False)
                for t in texts]

    def run(batch):
        enc = tok(batch, return_tensors="pt", padding=True, add_special_tokens=False).to("cuda")
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        return out.shape[1] - enc["input_ids"].shape[1]

    run(rendered[:2])  # warm-up
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    tokens = 0
    for i in range(0, len(rendered), batch_size):
        batch = rendered[i:i + batch_size]
        tokens += run(batch) * len(batch)
    torch.cuda.synchronize()
    took = time.perf_counter() - t0
    model = None  # free the weights before vLLM starts (run() above holds it by closure)
    torch.cuda.empty_cache()
    return {"seconds": round(took, 2), "tokens": tokens, "tokens_per_s": round(tokens / took, 1),
            "batch_size": batch_size}


def bench_vllm(folder: Path, texts: list[str], max_new_tokens: int) -> dict:
    from vllm import LLM, SamplingParams

    llm = LLM(model=str(folder), dtype="bfloat16", seed=0, gpu_memory_utilization=0.6)
    params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, ignore_eos=True)
    conversations = [[{"role": "user", "content": t}] for t in texts]
    llm.chat(conversations[:2], params, use_tqdm=False)  # warm-up
    t0 = time.perf_counter()
    outs = llm.chat(conversations, params, use_tqdm=False)
    took = time.perf_counter() - t0
    tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    del llm
    return {"seconds": round(took, 2), "tokens": tokens, "tokens_per_s": round(tokens / took, 1)}


def eval_generate_vllm(folder: Path, out_dir: Path) -> dict:
    """The eval CLI's vllm backend on 8 prompts (a separate process: vLLM keeps the GPU until it exits)."""
    import subprocess

    from eval.files import write_jsonl

    write_jsonl(out_dir / "prompts.jsonl", [{"id": f"p{i}", "prompt": t} for i, t in enumerate(prompts(8))])
    out = out_dir / "vllm.jsonl"
    done = subprocess.run([sys.executable, "-m", "eval", "generate", "--backend", "vllm", "--model", str(folder),
                           "--prompts", str(out_dir / "prompts.jsonl"), "--out", str(out), "--max-new-tokens", "32",
                           "--no-progress"], cwd=REPO, capture_output=True, text=True, timeout=900)
    rows = [json.loads(line) for line in out.read_text().splitlines()] if out.is_file() else []
    return {"exit_code": done.returncode, "rows": len(rows), "stderr_tail": done.stderr[-600:]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="qwen2-0.5b")
    ap.add_argument("--prompts", type=int, default=256)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "generate.json"))
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    missing = []
    if not torch.cuda.is_available():
        missing.append("a CUDA GPU")
    try:
        import vllm  # noqa: F401
    except ImportError:
        missing.append("the vllm package (pip install vllm)")
    if missing:
        print("bench_generate: needs " + " and ".join(missing) + "; nothing measured.")
        return 0
    texts = prompts(args.prompts)
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_model(args.shape, Path(tmp) / "model")
        hf = bench_hf(folder, texts, args.max_new_tokens, args.batch_size)
        print(f"HF generate ({args.shape}, batch {args.batch_size}): {hf['tokens_per_s']} tokens/s")
        fast = bench_vllm(folder, texts, args.max_new_tokens)
        print(f"vLLM offline: {fast['tokens_per_s']} tokens/s")
        check = eval_generate_vllm(folder, Path(tmp))
    ratio = round(fast["tokens_per_s"] / hf["tokens_per_s"], 1)
    print(f"vLLM / HF = {ratio}x (target >= 10x); eval generate --backend vllm: exit {check['exit_code']}, "
          f"{check['rows']} rows")
    result = {
        "shape": args.shape, "prompts": args.prompts, "max_new_tokens": args.max_new_tokens, "hf": hf, "vllm": fast,
        "speedup": ratio, "target_speedup": 10, "target_met": ratio >= 10, "eval_generate_vllm": check,
        "machine": {"gpu": torch.cuda.get_device_name(0), "python": platform.python_version(),
                    "torch": torch.__version__, "vllm": __import__("vllm").__version__},
        "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

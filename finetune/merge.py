"""``python -m finetune merge RUN_DIR``: fold the adapter into a bf16 copy of the base model.

The adapter was trained against the 4-bit NF4 weights, so it is merged into those weights
*dequantized* to bf16 (never into the 4-bit weights themselves, which would re-quantize the
sum). Before saving, the merged model's logits on a few conversations are compared with the
base-plus-adapter model's; the merge fails if they differ by more than the tolerance.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from pathlib import Path

from finetune import data as fdata
from finetune.config import from_dict, load_yaml

log = logging.getLogger("finetune")

_PROBES = [
    [{"role": "user", "content": "What is the capital of France? Answer in one word."},
     {"role": "assistant", "content": "Paris."}],
    [{"role": "system", "content": "You are concise."},
     {"role": "user", "content": "Write a haiku about rivers."},
     {"role": "assistant", "content": "Water finds the sea\nstones remember every bend\nnight carries the moon"}],
]


class MergeCheckFailed(RuntimeError):
    """The merged model's logits differ from base + adapter by more than the tolerance."""


def merge(run_dir: str | Path, output: str | Path | None = None, *, base: str | None = None,
          rtol: float = 0.02) -> Path:
    """Write ``<run_dir>/merged`` (or ``output``): the base dequantized to bf16 with the adapter merged in.

    Check: over probe conversations (and up to four training examples), the largest logit difference
    from base + adapter must be at most ``rtol`` times the largest reference logit magnitude (bf16
    rounding of the merged weights stays well inside 2%; a missing or wrongly scaled adapter does
    not). Top-1 agreement is reported too, for information: where the reference's top two logits
    are closer than the bf16 noise, rounding may swap them. Returns the output folder.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoTokenizer, GenerationConfig

    from contract.models import run_compute_dtype
    from contract.io import write_json
    from finetune.model import load_base, resolve_dtype

    run_dir = Path(run_dir)
    if not (run_dir / "adapter_config.json").is_file():
        raise ValueError(f"{run_dir} holds no adapter (adapter_config.json); give a finished run folder")
    cfg = from_dict(load_yaml(run_dir / "config.yaml"), where=str(run_dir / "config.yaml"))
    if base:
        cfg.model = base
    out = Path(output) if output else run_dir / "merged"
    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    batch = _probe_batch(tokenizer, cfg)
    dtype = run_compute_dtype(run_dir) or resolve_dtype(cfg.compute_dtype)  # the dtype the adapter trained in

    # 1. reference: the base exactly as in training (4-bit or not) plus the adapter
    reference = PeftModel.from_pretrained(load_base(cfg, dtype), run_dir).eval()
    ref_logits = _logits(reference, batch)
    del reference
    gc.collect()

    # 2. merged: the same base, dequantized to bf16, with the adapter folded into the weights
    model = load_base(cfg, dtype)
    if cfg.quantization == "nf4":
        model = model.dequantize(dtype=torch.bfloat16)
    model = model.to(torch.bfloat16)
    merged = PeftModel.from_pretrained(model, run_dir).merge_and_unload().eval()
    merged_logits = _logits(merged, batch)

    report = compare(ref_logits, merged_logits, rtol=rtol)
    report.update({"run_dir": str(run_dir), "base_model": cfg.model, "merged_dtype": "bfloat16",
                   "merged_into": "dequantized NF4 base" if cfg.quantization == "nf4" else "unquantized base"})
    if not report["passed"]:
        raise MergeCheckFailed(
            f"merged logits differ from base + adapter: max |diff| {report['max_abs_diff']:.4g} "
            f"(allowed {report['allowed_abs_diff']:.4g} = rtol {rtol} x max |logit|); nothing written")

    merged.config.use_cache = True
    merged.config.dtype = torch.bfloat16
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    if (run_dir / "generation_config.json").exists():
        GenerationConfig.from_pretrained(str(run_dir)).save_pretrained(str(out))
    write_json(out / "merge_check.json", report)
    log.info("merged model written to %s (max |logit diff| %.4g, top-1 agreement %.3f)", out,
             report["max_abs_diff"], report["top1_agreement"])
    return out


def compare(ref, other, *, rtol: float) -> dict:
    """Largest absolute logit difference, the allowance ``rtol * max|ref|``, and top-1 agreement."""
    ref, other = ref.float(), other.float()
    diff = (ref - other).abs().max().item()
    allowed = rtol * ref.abs().max().item()
    top1 = (ref.argmax(-1) == other.argmax(-1)).float().mean().item()
    return {"max_abs_diff": diff, "allowed_abs_diff": allowed, "rtol": rtol, "top1_agreement": top1,
            "positions": int(ref.shape[0]), "passed": diff <= allowed}


def _probe_batch(tokenizer, cfg) -> list[list[int]]:
    convs = list(_PROBES)
    if Path(cfg.data).exists():
        try:
            convs += [ex["messages"] for ex in fdata.read_messages(cfg.data)[:4]]
        except (ValueError, OSError):  # the check still has the probes
            pass
    return [tokenizer.apply_chat_template(c, tokenize=True, return_dict=True)["input_ids"][: cfg.max_length]
            for c in convs]


def _logits(model, batch: list[list[int]]):
    """Logits of every position of every sequence, concatenated to (positions, vocab), in float32."""
    import torch

    device = next(model.parameters()).device
    rows = []
    with torch.no_grad():
        for ids in batch:
            out = model(input_ids=torch.tensor([list(ids)], device=device), use_cache=False)
            rows.append(out.logits[0].float().cpu())
    return torch.cat(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m finetune merge",
        description="Merge a run's adapter into a bf16 copy of its base model (dequantized from the 4-bit "
                    "weights the adapter was trained on) and check the logits against base + adapter.")
    parser.add_argument("run_dir", help="a finished run folder (adapter_config.json, config.yaml)")
    parser.add_argument("--output", help="where to write the merged model (default: RUN_DIR/merged)")
    parser.add_argument("--base", help="base model (a path, Hub id, .gguf file or built-in name), if it moved since training "
                                       "(default: model from RUN_DIR/config.yaml)")
    parser.add_argument("--rtol", type=float, default=0.02,
                        help="allowed max |logit difference| as a fraction of the largest reference logit "
                             "(default: 0.02)")
    args = parser.parse_args(argv)
    out = merge(args.run_dir, args.output, base=args.base, rtol=args.rtol)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

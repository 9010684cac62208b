"""Build a tiny random causal LM with a locally trained tokenizer and a chat template.

Used by the tests of every module (no network, no Hub) and by the end-to-end
demo on machines that cannot reach the Hugging Face Hub. The model is a
2-layer Llama with random weights: it exercises the real code paths
(4-bit NF4 loading, LoRA, generation, chat templates) but says nothing
meaningful until trained.

    python -m finetune.tiny OUT_DIR [--corpus FILE ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Iterable, Iterator

# ChatML, with `{% generation %}` markers so `return_assistant_tokens_mask`
# (and TRL's assistant-only loss) can find the assistant tokens.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]


def _default_corpus() -> Iterator[str]:
    """Text that ships with Python: the pydoc topics and some module docstrings."""
    try:
        from pydoc_data.topics import topics

        yield from topics.values()
    except ImportError:  # pragma: no cover - stripped Python builds
        pass
    import collections
    import json as _json
    import os
    import re

    for mod in (collections, _json, os, re, argparse):
        if mod.__doc__:
            yield mod.__doc__


def _iter_corpus(files: Iterable[Path]) -> Iterator[str]:
    for path in files:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                if line.startswith("{"):
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError:
                        yield line
                        continue
                    yield json.dumps(obj, ensure_ascii=False)
                else:
                    yield line


def build_tokenizer(corpus: Iterable[str] | None = None, vocab_size: int = 2048):
    """Train a byte-level BPE tokenizer and wrap it as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus if corpus is not None else _default_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        unk_token=None,
        additional_special_tokens=["<|im_start|>", "<|endoftext|>"],
        model_max_length=1024,
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny_model(
    out_dir: str | Path,
    *,
    corpus_files: Iterable[str | Path] = (),
    vocab_size: int = 2048,
    hidden_size: int = 64,
    num_layers: int = 2,
    seed: int = 0,
) -> Path:
    """Write a tiny random Llama, its tokenizer and chat template to ``out_dir``.

    Returns the folder, loadable with ``AutoModelForCausalLM.from_pretrained``.
    The same arguments always give the same weights and vocabulary.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    corpus_files = [Path(p) for p in corpus_files]
    corpus = list(_default_corpus()) + list(_iter_corpus(corpus_files))
    tokenizer = build_tokenizer(corpus, vocab_size=vocab_size)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        max_new_tokens=64,
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "README.md").write_text(
        "# tiny random Llama\n\nBuilt locally by `finetune.tiny.build_tiny_model` "
        f"(seed {seed}, {num_layers} layers, hidden {hidden_size}, vocab {len(tokenizer)}). "
        "Random weights: for tests and offline demos only.\n",
        encoding="utf-8",
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m finetune.tiny",
        description="Build a tiny random Llama with a locally trained tokenizer (offline tests and demos).",
    )
    parser.add_argument("out_dir", help="folder to write the model and tokenizer to")
    parser.add_argument("--corpus", nargs="*", default=[], help="extra text/JSONL files to train the tokenizer on")
    parser.add_argument("--vocab-size", type=int, default=2048)
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = build_tiny_model(
        args.out_dir,
        corpus_files=args.corpus,
        vocab_size=args.vocab_size,
        hidden_size=args.hidden_size,
        num_layers=args.layers,
        seed=args.seed,
    )
    print(f"tiny model written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

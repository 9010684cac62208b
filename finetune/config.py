"""The one training config: field declarations (``contract.config.option``) and the checks that relate
them. Each field's documentation is its ``--help`` text and its comment in the saved ``config.yaml``.

Order of precedence: defaults (here, and only here) < the YAML file (``--config``) < ``--key value``
flags. Unknown keys fail and name the closest valid key; every problem is reported at once. The
mechanism (parsing, coercion, YAML, flags) is ``contract.config``, shared by the three command lines.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract import config as cc
from contract.models import DTYPES

GROUPS = {
    "model": "Model and quantization",
    "lora": "LoRA adapter",
    "data": "Data and tokenization",
    "train": "Training",
    "output": "Output, checkpoints and logging",
}


# transformers optimizer names offered in recipes (tests/test_finetune_config.py checks each against transformers)
OPTIMIZERS = ("adamw_torch", "adamw_torch_fused", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit",
              "lion_8bit", "lion_32bit", "paged_lion_8bit", "paged_lion_32bit", "ademamix", "ademamix_8bit",
              "paged_ademamix_8bit", "paged_ademamix_32bit", "adafactor", "sgd")
LOSSES = ("auto", "chunked", "fused", "full")  # finetune/loss.py


def _f(default: Any, help: str, group: str, choices: tuple | None = None, required: str = ""):
    return cc.option(default, help, group=group, choices=choices, required=required)


@dataclass
class FinetuneConfig:
    # ----------------------------------------------------------------- model
    model: str = _f("", "Base model: a Hugging Face Hub id, a local folder, a .gguf file or a built-in name "
                        "(smollm2-135m-instruct).", "model",
                    required="a Hub id, a local folder, a .gguf file or a built-in name")
    quantization: str = _f(
        "nf4", "nf4: QLoRA, the base loaded in 4-bit NF4 by bitsandbytes and frozen; none: plain LoRA on an "
        "unquantized base (in compute_dtype).", "model", ("nf4", "none"))
    double_quant: bool = _f(True, "Quantize the 4-bit quantization constants too (QLoRA's double "
                            "quantization, ~0.4 bit/param saved).", "model")
    compute_dtype: str = _f(
        "auto", "dtype of the matmuls and of the unquantized weights. auto: bfloat16 where the device does "
        "bf16 natively (CUDA compute capability 8+, CPUs with AVX512-BF16/AMX), else float32.", "model",
        DTYPES)
    quant_storage: str = _f(
        "uint8", "dtype the packed 4-bit weights are stored in (bnb_4bit_quant_storage). Use bfloat16 for "
        "FSDP-QLoRA so FSDP can shard them like the other weights.", "model",
        ("uint8", "bfloat16", "float16", "float32"))
    upcast_layers: bool = _f(
        False, "Cast the base's small unquantized weights (norms, embeddings, LM head) to float32 for training, as "
        "peft's prepare_model_for_kbit_training does. false (default) keeps them in compute_dtype, as inference "
        "loads them: far less memory with a large vocabulary, and the adapter sees the weights it will run with.",
        "model")
    attn_implementation: str = _f(
        "sdpa", "Attention kernel. sdpa: with padding_free/packing batches each example attends only to itself "
        "(finetune/attention.py): on a GPU PyTorch's varlen flash kernel over the whole row (in fp32 its "
        "nested-tensor sdpa), on a CPU sdpa per example; with padded batches plain sdpa. eager: a block-diagonal "
        "mask from position_ids (slow, for checks). flash_attention_2: the flash-attn package's varlen kernel "
        "(GPU; pip install flash-attn). The collator computes the sequence boundaries once per batch for all of "
        "them.", "model",
        ("sdpa", "eager", "flash_attention_2"))
    # ----------------------------------------------------------------- lora
    lora_r: int = _f(64, "LoRA rank (QLoRA paper: 64).", "lora")
    lora_alpha: float = _f(16, "LoRA scaling numerator; the update is scaled by alpha/r (QLoRA paper: 16).", "lora")
    lora_dropout: float = _f(0.1, "Dropout on the LoRA input (QLoRA paper: 0.1 up to 13B, 0.05 for 33B/65B).",
                             "lora")
    lora_target: str = _f("all-linear", "Modules that get adapters: all-linear (every linear layer but the "
                          "output head, as in QLoRA) or a comma-separated list such as q_proj,v_proj.", "lora")
    # ----------------------------------------------------------------- data
    data: str = _f("", "Training data: a curation export folder (data/<name>: its train.jsonl, and its "
                   "dev.jsonl as the dev set unless dev_data is given), a JSONL/JSON/Parquet/CSV file in messages "
                   "format, a datasets save_to_disk folder, or a Hub dataset id (hf:owner/name).", "data",
                   required="a curation export folder, a messages-format file, a save_to_disk folder or a Hub "
                   "dataset id")
    swap_roles: bool = _f(
        False, "Train a backward model (instruction backtranslation, Humpback): each example's answer becomes "
        "the user turn and its instruction the answer to learn, so the model writes the instruction a text "
        "answers. A multi-turn example gives its first exchange; a system prompt is dropped. sft only.", "data")
    data_split: str = _f("train", "Split to read from a save_to_disk folder with several splits or a Hub "
                         "dataset.", "data")
    dev_data: typing.Optional[str] = _f(None, "Separate dev set for the dev loss (same formats as data). "
                                        "When null: an export folder's dev.jsonl, else dev_size of data is held "
                                        "out.", "data")
    dev_size: float = _f(0.05, "Fraction of data held out (seeded) for the dev loss when there is no dev set; "
                         "at least one example; 0 turns the dev loss off.", "data")
    chat_template: typing.Optional[str] = _f(
        None, "Chat template: null uses the tokenizer's own, or for a base model without one the default "
        "(### User: / ### Assistant: turns ended by the EOS token, no added tokens). Or a path to a .jinja "
        "file. The template used is saved with the tokenizer in the run folder.", "data")
    eot_token: typing.Optional[str] = _f(
        None, "Token that ends an assistant turn and must be learned (e.g. <|im_end|>, <|eot_id|>). null: "
        "found from the chat template.", "data")
    max_length: int = _f(2048, "Longest training sequence in tokens (prompt and answer); more than the model's "
                         "max_position_embeddings is an error unless allow_longer_than_model.", "data")
    allow_longer_than_model: bool = _f(False, "Allow max_length above the model's max_position_embeddings (for a "
                                       "model whose RoPE scaling extends its context).", "data")
    overlong: str = _f("truncate", "What to do with conversations longer than max_length: truncate (keep the "
                       "start; dropped if no answer token is left) or drop. Both are counted in the log.", "data",
                       ("truncate", "drop"))
    batching: str = _f(
        "padding_free", "padding_free: the examples of a batch are concatenated into one row with position_ids "
        "restarting per example (no padding, examples cannot attend to each other); packing: examples are first "
        "packed into rows of up to max_length tokens, a batch is batch_size such rows, concatenated the same "
        "way; padded: classic right padding with an attention mask.", "data",
        ("padding_free", "packing", "padded"))
    # ----------------------------------------------------------------- train
    method: str = _f("sft", "sft: supervised fine-tuning on messages (loss on the assistant tokens); dpo: Direct "
                     "Preference Optimization (TRL's DPOTrainer) on preference pairs (prompt/chosen/rejected, e.g. "
                     "from python -m eval pairs).", "train", ("sft", "dpo"))
    init_adapter: typing.Optional[str] = _f(
        None, "Start from this adapter (a finetune run folder) instead of new LoRA weights: e.g. DPO on top of an SFT "
        "run. With dpo the reference policy is this adapter, frozen; without it, the base model.", "train")
    dpo_beta: float = _f(0.1, "dpo: strength of the KL penalty that keeps the policy near the reference (beta).",
                         "train")
    dpo_precompute_ref: bool = _f(True, "dpo: compute the reference policy's log-probabilities once, in a pass over "
                                  "the pairs before training, instead of a reference forward in every step (less "
                                  "memory, and faster from one epoch on).", "train")
    dpo_loss: str = _f("sigmoid", "dpo: loss type (TRL's loss_type): sigmoid (the DPO paper), ipo, hinge, robust.",
                       "train", ("sigmoid", "ipo", "hinge", "robust"))
    epochs: float = _f(3.0, "Passes over the training data (ignored when max_steps > 0).", "train")
    max_steps: int = _f(-1, "Optimizer steps to run; overrides epochs when > 0.", "train")
    batch_size: int = _f(16, "Examples (packing: packed rows) per device per micro-batch.", "train")
    grad_accum: int = _f(1, "Micro-batches accumulated per optimizer step.", "train")
    learning_rate: float = _f(2e-4, "Peak learning rate (QLoRA paper: 2e-4 up to 13B, 1e-4 above).", "train")
    lr_scheduler: str = _f("constant", "Learning-rate schedule after warmup (a transformers scheduler name: "
                           "constant, linear, cosine, ...). QLoRA paper: constant.", "train")
    warmup_ratio: float = _f(0.03, "Fraction of the steps spent warming the learning rate up linearly.", "train")
    weight_decay: float = _f(0.0, "AdamW weight decay on the trainable weights.", "train")
    adam_beta2: float = _f(0.999, "AdamW beta2 (LIMA used 0.95).", "train")
    max_grad_norm: float = _f(0.3, "Gradient clipping norm (QLoRA paper: 0.3).", "train")
    optim: str = _f(
        "adamw_torch", "Optimizer (a transformers optim name). adamw_torch / adamw_torch_fused: PyTorch AdamW. "
        "adamw_8bit, lion_8bit, ademamix_8bit: bitsandbytes' 8-bit states (about 1/4 of AdamW's optimizer memory). "
        "paged_*: bitsandbytes' paged optimizers (QLoRA), whose states move to CPU memory when the GPU runs short, "
        "so a long batch spikes instead of failing; paging needs CUDA (on a CPU they run unpaged). adafactor, sgd "
        "also.", "train", OPTIMIZERS)
    loss: str = _f(
        "auto", "How the loss is computed (finetune/loss.py). chunked: from the last hidden states of the trained "
        "positions only, the LM head and float32 cross-entropy over chunks of them, each chunk's gradient "
        "computed with it (no logits kept for the backward). fused: liger-kernel's fused linear cross-entropy "
        "(CUDA; pip install liger-kernel). auto: fused where it can run, else chunked. full: transformers' own "
        "loss over the full float32 logits (the reference; memory grows with vocabulary x tokens).", "train",
        LOSSES)
    autocast: bool = _f(
        True, "On a GPU with a bf16 or fp16 compute_dtype: the forward under the Trainer's mixed-precision autocast "
        "(as TRL's defaults run), so the LoRA matmuls run in the compute dtype while the adapter weights stay float32 "
        "for the optimizer. false: peft casts every adapter's input to float32 and multiplies in float32 (slower "
        "on a GPU, and those float32 copies are kept for the backward). No effect on a CPU.", "train")
    liger_kernels: bool = _f(
        False, "liger-kernel's Triton kernels for the layers (RMSNorm, the SwiGLU MLP, rotary embeddings) in place "
        "of transformers' chains of small ops, as TRL's use_liger_kernel does: fewer kernel launches and less memory "
        "traffic per layer (CUDA; pip install liger-kernel; the model types liger-kernel patches: Llama, Qwen2, "
        "Mistral, Gemma, Phi3 and more). The loss has its own setting (loss: fused).", "train")
    compile_layers: bool = _f(
        False, "torch.compile the attention and MLP blocks of every decoder layer in place (regional compilation, "
        "dynamic shapes): the LoRA adapters, 4-bit matmuls, rotary embeddings and MLP run as a few compiled graphs a "
        "layer, with less Python and fewer kernel launches a step, after compiling once at the first step. The "
        "attention of packed rows stays outside the graphs. Needs Triton on a GPU, a C++ compiler on a CPU. Same "
        "losses as without it; its speed on a GPU is not measured yet (bench/README.md).", "train")
    gradient_checkpointing: bool = _f(True, "Recompute activations in the backward pass: much less memory, "
                                      "~20-30% more compute.", "train")
    seed: int = _f(42, "Seed for the dev split, data order, dropout and LoRA initialisation.", "train")
    # ----------------------------------------------------------------- output
    output_dir: str = _f("runs/finetune", "Run folder: adapter, tokenizer, config.yaml, metrics.jsonl, model "
                         "card; checkpoints in <output_dir>/checkpoints.", "output")
    resume: bool = _f(False, "Continue from the newest complete checkpoint in output_dir (after a crash, "
                      "SIGTERM or SIGKILL); starts fresh when there is none.", "output")
    overwrite: bool = _f(False, "Delete an existing run in output_dir and start over.", "output")
    save_steps: int = _f(50, "Save a resumable checkpoint every N optimizer steps.", "output")
    save_total_limit: int = _f(2, "Checkpoints kept (the oldest are deleted).", "output")
    eval_steps: int = _f(50, "Compute the dev loss every N optimizer steps (and at the end).", "output")
    logging_steps: int = _f(10, "Log the training loss every N optimizer steps (metrics.jsonl, progress bar).",
                            "output")
    tensorboard: bool = _f(True, "Also log to TensorBoard (<output_dir>/tensorboard) when tensorboard is "
                           "installed.", "output")


FIELDS = {f.name: f for f in dataclasses.fields(FinetuneConfig)}


def closest(key: str) -> str:
    """The valid key nearest to ``key``, as a hint for an error message."""
    return cc.closest(key, FIELDS)


def validate(cfg: FinetuneConfig) -> list[str]:
    """Checks that relate fields or bound numbers (choices, types and finite numbers are checked for every
    config by contract.config)."""
    issues = []
    for name in ("lora_r", "max_length", "batch_size", "grad_accum", "save_steps", "eval_steps",
                 "logging_steps", "save_total_limit"):
        if getattr(cfg, name) < 1:
            issues.append(f"{name}: must be >= 1, got {getattr(cfg, name)}")
    if cfg.lora_alpha <= 0:
        issues.append(f"lora_alpha: must be > 0, got {cfg.lora_alpha}")
    if not 0 <= cfg.lora_dropout < 1:
        issues.append(f"lora_dropout: must be in [0, 1), got {cfg.lora_dropout}")
    if not 0 <= cfg.dev_size < 1:
        issues.append(f"dev_size: must be a fraction in [0, 1), got {cfg.dev_size}")
    if not 0 <= cfg.warmup_ratio < 1:
        issues.append(f"warmup_ratio: must be in [0, 1), got {cfg.warmup_ratio}")
    if cfg.learning_rate <= 0:
        issues.append(f"learning_rate: must be > 0, got {cfg.learning_rate}")
    if cfg.max_steps <= 0 and cfg.epochs <= 0:
        issues.append("epochs: must be > 0 when max_steps is not set")
    if cfg.max_steps == 0 or cfg.max_steps < -1:
        issues.append(f"max_steps: must be > 0, or -1 to use epochs; got {cfg.max_steps}")
    if cfg.weight_decay < 0 or cfg.max_grad_norm < 0:
        issues.append("weight_decay and max_grad_norm: must be >= 0")
    if not 0 < cfg.adam_beta2 < 1:
        issues.append(f"adam_beta2: must be in (0, 1), got {cfg.adam_beta2}")
    if cfg.quantization == "none" and cfg.quant_storage != "uint8":
        issues.append("quant_storage: only applies with quantization: nf4")
    if cfg.resume and cfg.overwrite:
        issues.append("resume and overwrite: choose one")
    if cfg.dpo_beta <= 0:
        issues.append(f"dpo_beta: must be > 0, got {cfg.dpo_beta}")
    if cfg.method == "dpo" and cfg.swap_roles:
        issues.append("swap_roles: is for sft (a backward model learns instructions from answers), not dpo")
    if cfg.method == "dpo" and cfg.batching == "packing":
        issues.append("batching: packing does not apply to dpo (pairs are batched by TRL's DPOTrainer)")
    if not re.fullmatch(r"all-linear|[\w.*]+(,[\w.*]+)*", cfg.lora_target.replace(" ", "")):
        issues.append(f"lora_target: {cfg.lora_target!r} is not all-linear or a comma-separated list of names")
    return issues


def check(cfg: FinetuneConfig) -> FinetuneConfig:
    """Raise one ConfigError listing every problem with ``cfg``; return it unchanged otherwise."""
    issues = cc.check_fields(cfg) + validate(cfg)
    if issues:
        raise cc.ConfigError(issues)
    return cfg


def from_dict(values: dict, where: str = "config", base: FinetuneConfig | None = None) -> FinetuneConfig:
    """A config from ``values`` over ``base`` (default: the defaults); unknown keys and bad types raise
    one ConfigError (the values are not validated as a whole: a run folder's config.yaml is read this way)."""
    issues: list[str] = []
    cfg = cc.apply(dataclasses.replace(base) if base else FinetuneConfig(), values, where, issues)
    if issues:
        raise cc.ConfigError(issues)
    return cfg


load_yaml = cc.load_yaml
to_dict = cc.to_dict


def to_yaml(cfg: FinetuneConfig, header: str = "") -> str:
    """The config as YAML, each key preceded by its documentation as a comment, grouped by section."""
    return cc.to_yaml(cfg, header, GROUPS)


def save_yaml(cfg: FinetuneConfig, path: str | os.PathLike, header: str = "") -> Path:
    return cc.save_yaml(cfg, path, header, GROUPS)


_fmt_default = cc.fmt_default


# --------------------------------------------------------------------------- command line


def build_parser(prog: str = "python -m finetune") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="QLoRA / LoRA fine-tuning on a curated messages dataset. Settings come from the defaults, "
                    "then the YAML file given by --config, then --key value flags (--key_name and --key-name "
                    "both work). Also: `python -m finetune merge RUN_DIR` writes a merged bf16 model.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
        epilog="Example:\n  python -m finetune --config finetune/recipes/tiny-cpu.yaml "
               "--model .demo/tiny-llama --data data/demo/train.jsonl --output_dir runs/demo --max_steps 20",
    )
    parser.add_argument("--config", metavar="YAML", help="recipe file (finetune/recipes/*.yaml)")
    cc.add_arguments(parser, FinetuneConfig, groups=GROUPS)
    return parser


def parse_args(argv: list[str] | None = None) -> FinetuneConfig:
    """defaults < YAML (--config) < flags; every problem (unknown keys included) in one ConfigError."""
    args, unknown = build_parser().parse_known_args(argv)
    issues = cc.unknown_flags(unknown, FIELDS)
    layers = []
    if args.config:
        layers.append((cc.load_yaml(args.config), str(args.config)))
    layers.append((cc.given(args), "command line"))
    try:
        cfg = cc.build(FinetuneConfig, *layers, validate=validate)
    except cc.ConfigError as err:
        issues += err.issues
    if issues:
        raise cc.ConfigError(issues)
    return cfg


def load(path: str | os.PathLike, **overrides: Any) -> FinetuneConfig:
    """A checked config from a YAML file plus keyword overrides (for programmatic use and tests)."""
    return cc.build(FinetuneConfig, (cc.load_yaml(path), str(path)), (overrides, "overrides"), validate=validate)

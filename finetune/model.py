"""The model and tokenizer as training sees them: the compute dtype, the 4-bit NF4 base (bitsandbytes), the
attention kernel for packed rows, the frozen base and the LoRA adapters (peft). Shared by the supervised
(``finetune.sft``) and the preference (``finetune.dpo``) methods, by ``finetune merge`` and the benchmark."""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

from finetune import data as fdata
from finetune.config import FinetuneConfig

log = logging.getLogger("finetune")
# peft and TRL read a property transformers deprecated (is_gradient_checkpointing): a warning for their
# maintainers on every run, nothing a user can act on
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def load_tokenizer(cfg: FinetuneConfig):
    from contract.models import load_tokenizer as load_model_tokenizer

    tokenizer = load_model_tokenizer(cfg.model)  # a clear ModelNotFound (a ValueError) when it cannot be loaded
    eot = fdata.setup_template(tokenizer, cfg.chat_template, cfg.eot_token)
    tokenizer.padding_side = "right"
    return tokenizer, eot



def resolve_dtype(name: str):
    """The compute dtype for ``compute_dtype: name`` (``auto``: bf16 where the device computes it natively,
    else fp32); one function for the whole project, :func:`contract.models.compute_dtype`."""
    from contract.models import compute_dtype

    return compute_dtype(name)


def _device_map():
    import torch

    if not torch.cuda.is_available():
        return {"": "cpu"}
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        return None  # FSDP places the shards itself
    return {"": int(os.environ.get("LOCAL_RANK", 0))}


def quantization_config(cfg: FinetuneConfig, dtype):
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=cfg.double_quant,
        bnb_4bit_compute_dtype=dtype,
        bnb_4bit_quant_storage=getattr(torch, cfg.quant_storage),
    )


def training_attention(cfg: FinetuneConfig) -> str:
    """sdpa with padding-free or packed batches: per-example sdpa (finetune/attention.py), else as configured."""
    if cfg.attn_implementation == "sdpa" and cfg.batching != "padded":
        from finetune.attention import register

        return register()
    return cfg.attn_implementation


def load_base(cfg: FinetuneConfig, dtype, *, quantized: bool | None = None, attn: str | None = None):
    """The base model as training sees it: 4-bit NF4 (QLoRA) or unquantized in ``dtype``."""
    import torch

    from contract.models import load_causal_lm

    quantized = cfg.quantization == "nf4" if quantized is None else quantized
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": attn or cfg.attn_implementation}
    if quantized:
        kwargs["quantization_config"] = quantization_config(cfg, dtype)
        if cfg.quant_storage != "uint8":  # FSDP-QLoRA: every weight in one dtype
            kwargs["dtype"] = getattr(torch, cfg.quant_storage)
    device_map = _device_map()
    if device_map is not None:
        kwargs["device_map"] = device_map
    model = load_causal_lm(cfg.model, **kwargs)  # a Hub id, a folder, a .gguf file or a built-in name
    model.config.use_cache = False  # a cache would defeat the packed-sequence attention mask
    return model


def lora_config(cfg: FinetuneConfig):
    from peft import LoraConfig

    target = cfg.lora_target if cfg.lora_target == "all-linear" else [
        t.strip() for t in cfg.lora_target.split(",") if t.strip()]
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=target, bias="none", task_type="CAUSAL_LM")


def load_model(cfg: FinetuneConfig, dtype):
    """Base (4-bit or not) → k-bit training preparation → LoRA adapters on it: new ones, or those of
    ``init_adapter`` (a finished run or an adapter folder) to train further."""
    from peft import PeftModel, get_peft_model

    model = prepare_base(cfg, dtype, training_attention(cfg))
    sharded = cfg.quantization == "nf4" and cfg.quant_storage != "uint8"
    if cfg.init_adapter:
        model = PeftModel.from_pretrained(model, cfg.init_adapter, is_trainable=True,
                                          autocast_adapter_dtype=not sharded)
        lora = model.peft_config["default"]
        log.info("training further the adapter of %s (LoRA r=%d alpha=%s)", cfg.init_adapter, lora.r, lora.lora_alpha)
    else:
        model = get_peft_model(model, lora_config(cfg), autocast_adapter_dtype=not sharded)
        log.info("LoRA r=%d alpha=%s on %s", cfg.lora_r, cfg.lora_alpha, cfg.lora_target)
    trainable, total = model.get_nb_trainable_parameters()
    log.info("%s trainable of %s parameters (%.2f%%)", f"{trainable:,}", f"{total:,}", 100 * trainable / total)
    return model


def prepare_base(cfg: FinetuneConfig, dtype, attn: str):
    """The base model loaded (4-bit or not) and frozen for adapter training."""
    from peft import prepare_model_for_kbit_training

    model = load_base(cfg, dtype, attn=attn)
    sharded = cfg.quantization == "nf4" and cfg.quant_storage != "uint8"
    if cfg.quantization == "nf4" and not sharded and cfg.upcast_layers:
        # QLoRA's original preparation: freezes the base, casts the small unquantized weights (norms,
        # embeddings, head) to fp32, and makes the input embeddings require grad for checkpointing
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        # the base frozen in the compute dtype, as inference will load it (embeddings and head included:
        # an fp32 copy of a 150k-vocabulary head and its logits cost GBs); the Trainer turns on
        # (non-reentrant) checkpointing, which needs no input gradients
        for param in model.parameters():
            param.requires_grad_(False)
    if cfg.liger_kernels:
        apply_layer_kernels(model)
    return model


def apply_layer_kernels(model) -> None:
    """liger-kernel's Triton kernels for ``model``'s RMSNorms, SwiGLU MLPs and rotary embeddings (the layers'
    chains of small ops, one kernel each), as TRL's ``use_liger_kernel`` applies them; the loss is left alone
    (``loss`` chooses it). A model type liger-kernel does not patch is an error, not a silent no-op."""
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN, _apply_liger_kernel_to_instance

    model_type = getattr(model.config, "model_type", None)
    if model_type not in MODEL_TYPE_TO_APPLY_LIGER_FN:
        raise ValueError(f"liger_kernels: liger-kernel has no kernels for model type {model_type!r} (it patches "
                         f"{', '.join(sorted(MODEL_TYPE_TO_APPLY_LIGER_FN))}); set liger_kernels: false")
    _apply_liger_kernel_to_instance(model=model, rope=True, rms_norm=True, swiglu=True, cross_entropy=False,
                                    fused_linear_cross_entropy=False)
    log.info("liger-kernel's RMSNorm, SwiGLU and RoPE kernels in the %s layers", model_type)


def compile_missing() -> str | None:
    """What torch.compile's inductor lacks here to compile the layers (Triton on a GPU, a C++ compiler on a CPU),
    or None."""
    import importlib.util
    import shutil

    import torch

    if torch.cuda.is_available():
        return None if importlib.util.find_spec("triton") else "Triton (pip install triton)"
    cxx = os.environ.get("CXX", "g++")  # what inductor calls on a CPU
    return None if shutil.which(cxx) else f"a C++ compiler ({cxx} is not on PATH; set CXX to one)"


def compile_layers(model) -> None:
    """``torch.compile`` the blocks of every decoder layer that hold linear layers (attention, MLP) in place.
    Compiled at the first step, with dynamic shapes (batches vary in
    length); the layers share their code, so one set of graphs serves them all.

    Inside the blocks, peft's adapters, their dropout and bitsandbytes' 4-bit matmuls are traced into the graphs
    (fewer kernels a layer, and none of their Python a step); the attention of packed rows stays outside
    (finetune/attention.py), between the attention block's two graphs. Blocks, not whole layers: the layer's
    gradient checkpointing cannot take a graph that breaks for the attention, and dynamo would then run the whole
    layer uncompiled. The blocks are compiled in place, not wrapped, so state dict keys, checkpoints and the saved
    adapter are as without it."""
    import torch
    from transformers.modeling_layers import GradientCheckpointingLayer

    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    blocks = [child for layer in layers for child in layer.children()
              if any(isinstance(m, torch.nn.Linear) for m in child.modules())]
    if not blocks:
        raise ValueError(f"compile_layers: {type(model).__name__} has no transformers decoder layers "
                         "(GradientCheckpointingLayer) with linear layers to compile; set compile_layers: false")
    for block in blocks:
        block.compile(dynamic=True)
    log.info("compile_layers: the %s of %d %s layers are compiled by torch.compile at the first step",
             " and ".join(sorted({type(b).__name__ for b in blocks})), len(layers), type(layers[0]).__name__)


def check_model_fits(cfg: FinetuneConfig, model) -> None:
    """max_length must not exceed the model's positions unless allow_longer_than_model says so."""
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit and cfg.max_length > limit:
        if not cfg.allow_longer_than_model:
            raise ValueError(f"max_length: {cfg.max_length} exceeds the model's max_position_embeddings ({limit}); "
                             f"lower max_length, or set allow_longer_than_model: true if the model's RoPE scaling "
                             "extends it")
        log.warning("max_length %d exceeds the model's max_position_embeddings %d (allow_longer_than_model)",
                    cfg.max_length, limit)

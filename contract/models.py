"""Models as every stage loads them: the one function that decides the compute dtype.

``compute_dtype("auto")`` is bfloat16 where the device computes it natively (CUDA compute capability
8 and newer; CPUs with AVX512-BF16 or AMX), else float32. Training, merge, generation and the local
judge all call it, and a training run records what it resolved to in its run folder, so whatever
reloads the adapter later (on this machine or another) uses the dtype the adapter was trained in:
:func:`run_compute_dtype`.

``CURATED_ALIGN_COMPUTE_DTYPE=bfloat16|float16|float32`` overrides what ``auto`` resolves to (the
test suite runs both paths on any machine this way; a user can force fp32 on a CPU whose bf16 is
slow). An explicit dtype in a config is never overridden.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

DTYPES = ("auto", "bfloat16", "float16", "float32")
ENV_DTYPE = "CURATED_ALIGN_COMPUTE_DTYPE"


def compute_dtype(name: str = "auto", device: str | None = None):
    """The torch dtype for ``name`` (``auto`` or a dtype name) on ``device`` (default: cuda when
    available, else cpu)."""
    import torch

    if name not in DTYPES:
        raise ValueError(f"compute dtype {name!r} is not one of {', '.join(DTYPES)}")
    if name == "auto":
        name = os.environ.get(ENV_DTYPE, "").strip() or "auto"
        if name not in DTYPES:
            raise ValueError(f"{ENV_DTYPE}={name!r} is not one of {', '.join(DTYPES[1:])}")
    if name != "auto":
        return getattr(torch, name)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device == "cpu":
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    return torch.float32  # mps and others: fp32 is what works everywhere


def cpu_has_native_bf16() -> bool:
    """True on x86 CPUs with AVX512-BF16 or AMX (Zen 4, Sapphire Rapids and newer)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def dtype_name(dtype) -> str:
    """``torch.bfloat16`` → ``"bfloat16"``."""
    return str(dtype).removeprefix("torch.")


def run_compute_dtype(run_dir: str | os.PathLike):
    """The dtype a finetune run trained in (its ``provenance.json``, written when training starts),
    or None when ``run_dir`` is not a run folder (a bare adapter: the caller resolves ``auto``)."""
    import torch

    prov = Path(run_dir) / "provenance.json"
    if not prov.is_file():
        return None
    try:
        name = json.loads(prov.read_text(encoding="utf-8")).get("compute_dtype")
    except (OSError, ValueError):
        return None
    return getattr(torch, name) if name in DTYPES[1:] else None

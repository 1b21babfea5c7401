"""Meaning-based search without I/O: the Embedder port, what text a segment is embedded as, cosine
ranking over candidates and reciprocal rank fusion of the text and vector rankings."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from worker.core.negation import positive_text

RRF_K = 60  # the constant of Cormack et al.'s reciprocal rank fusion
MAX_EMBED_CHARS = 2000


class Embedder(Protocol):
    """Turns texts into unit vectors. ``name`` identifies model + dimension: vectors of another name are stale."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str], *, query: bool = False) -> tuple[np.ndarray, int]:
        """Unit vectors (len(texts) x dim, float32) and the tokens billed (0 offline)."""
        ...


def segment_text(description: str | None, structured: Mapping[str, Any] | None) -> str:
    """What a segment is embedded as: its description and structured facts, negated facts left out."""
    return positive_text(description, structured)[:MAX_EMBED_CHARS]


def text_hash(text: str, model: str) -> str:
    """Changes when the text or the model changes: re-embedding is needed only then (idempotent reindex)."""
    return hashlib.sha256(f"{model}\x00{text}".encode()).hexdigest()[:32]


def to_blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def from_blob(blob: bytes, dim: int) -> np.ndarray:
    v: np.ndarray = np.frombuffer(blob, dtype="<f4")
    if v.shape[0] != dim:
        raise ValueError(f"stored vector has {v.shape[0]} values, expected {dim}")
    return v


def normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    out: np.ndarray = (matrix / np.maximum(norms, 1e-12)).astype(np.float32)
    return out


def cosine_top(query: np.ndarray, keys: Sequence[Any], matrix: np.ndarray, k: int) -> list[tuple[Any, float]]:
    """The ``k`` keys whose unit vectors are closest to ``query`` (exact: one matrix-vector product)."""
    if not len(keys):
        return []
    scores = matrix @ query.astype(np.float32)
    k = min(k, len(keys))
    idx = np.argpartition(-scores, k - 1)[:k]
    idx = idx[np.argsort(-scores[idx], kind="stable")]
    return [(keys[i], float(scores[i])) for i in idx]


def rrf(rankings: Iterable[Sequence[Any]], k: int = RRF_K) -> list[tuple[Any, float]]:
    """Reciprocal rank fusion: score(d) = sum over rankings of 1 / (k + rank). Best first, ties by first seen."""
    scores: dict[Any, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])

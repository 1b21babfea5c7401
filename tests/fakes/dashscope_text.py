"""Text embedding for the loopback DashScope fake (shapes from the dashscope SDK 2.0.2).

``POST /api/v1/services/embeddings/text-embedding/text-embedding`` (``dashscope.TextEmbedding.call``): body
``{"model", "input": {"texts": [...]}, "parameters": {"text_type", "dimension"}}``; reply
``output.embeddings[{text_index, embedding}]``, ``usage.total_tokens``. At most 10 texts per request
(v3/v4). Vectors are deterministic hashed bag-of-words (shared words -> higher cosine).

Text generation (``dashscope.Generation.call`` on a text model) is served by the fake's one model-call
handler (``dashscope_server._model_call``, kind ``generation``), scripted as every model call is.
Embeddings are scripted only by ``fake.embedding_behavior``: they happen for every stored segment and must
not take the behaviours or gate places other tests script for model calls.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
import uuid
from typing import Any

from tests.fakes.dashscope_server import Behavior, RecordedRequest, text_tokens

EMBEDDING_PATH = "/api/v1/services/embeddings/text-embedding/text-embedding"
PATHS = (EMBEDDING_PATH,)
EMBED_DIMS = (64, 128, 256, 512, 768, 1024, 1536, 2048)
MAX_TEXTS = 10


def embed(text: str, dim: int) -> list[float]:
    vec = [0.0] * dim
    for word in re.findall(r"\w+", text.lower()):
        h = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "big")
        vec[h % dim] += 1.0 if h & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


def handle(handler: Any, path: str) -> None:
    """One embedding request: never gated, scripted only by ``fake.embedding_behavior``."""
    fake = handler.fake
    raw = handler._body()
    rec = RecordedRequest("embedding", "POST", handler.path, handler._headers_dict(), api_key=handler._api_key())
    rid = str(uuid.uuid4())
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        body = None
    rec.json = body
    if isinstance(body, dict):
        rec.model = body.get("model")
        rec.parameters = dict(body.get("parameters") or {})
    behavior: Behavior | None = getattr(fake, "embedding_behavior", None)
    rec.behavior = behavior
    problem = _problem(body, rec)
    fake._record(rec)
    if behavior is not None and behavior.delay_s:
        time.sleep(behavior.delay_s)
    status, code, message = 0, "", ""
    if behavior is not None and behavior.is_error:
        status, code, message = behavior.status, behavior.code or "Unknown", behavior.message or ""
    elif not fake.accepts_key(rec.api_key):
        status, code, message = 401, "InvalidApiKey", "Invalid API-key provided."
    elif problem:
        status, code, message = 400, "InvalidParameter", problem
    if status:
        rec.response_status = status
        handler._send_json(status, {"request_id": rid, "code": code, "message": message})
        return
    rec.response_status = 200
    texts = body["input"]["texts"]  # type: ignore[index]
    dim = int(rec.parameters.get("dimension") or 1024)
    out = [{"text_index": i, "embedding": embed(t, dim)} for i, t in enumerate(texts)]
    usage = {"total_tokens": sum(text_tokens(t) for t in texts)}
    handler._send_json(200, {"output": {"embeddings": out}, "usage": usage, "request_id": rid})


def _problem(body: Any, rec: RecordedRequest) -> str | None:
    if not isinstance(body, dict) or not rec.model:
        return 'Required parameter "model" missing from request.'
    texts = (body.get("input") or {}).get("texts")
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
        return "input.texts must be a non-empty list of non-empty strings."
    if len(texts) > MAX_TEXTS:
        return f"batch size is invalid, it should not be larger than {MAX_TEXTS}."
    dim = rec.parameters.get("dimension")
    if dim is not None and dim not in EMBED_DIMS:
        return f"dimension must be one of {EMBED_DIMS}."
    return None

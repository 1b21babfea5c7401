"""Text generation and text embedding for the loopback DashScope fake (shapes from the dashscope SDK 2.0.2).

* ``POST /api/v1/services/aigc/text-generation/generation`` (``dashscope.Generation.call``): body
  ``{"model", "input": {"messages": [{"role", "content": str}]}, "parameters": {"result_format": "message",
  "incremental_output", ...}}``; reply ``output.choices[0].message.content`` as a *string*,
  ``usage {input_tokens, output_tokens, total_tokens}``; SSE when ``X-DashScope-SSE: enable``.
* ``POST /api/v1/services/embeddings/text-embedding/text-embedding`` (``dashscope.TextEmbedding.call``): body
  ``{"model", "input": {"texts": [...]}, "parameters": {"text_type", "dimension"}}``; reply
  ``output.embeddings[{text_index, embedding}]``, ``usage.total_tokens``. At most 10 texts per request
  (v3/v4). Vectors are deterministic hashed bag-of-words (shared words -> higher cosine).

Text generation is scripted as model calls are (``enqueue(Behavior.error(...))``, ``reply_fn``, ``hold()``);
embeddings only by ``fake.embedding_behavior`` (they happen for every stored segment and must not take the
behaviours or gate places other tests script for model calls).
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

TEXT_GENERATION_PATH = "/api/v1/services/aigc/text-generation/generation"
EMBEDDING_PATH = "/api/v1/services/embeddings/text-embedding/text-embedding"
PATHS = (TEXT_GENERATION_PATH, EMBEDDING_PATH)
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
    fake = handler.fake
    raw = handler._body()
    kind = "text-generation" if path == TEXT_GENERATION_PATH else "embedding"
    rec = RecordedRequest(kind, "POST", handler.path, handler._headers_dict(), api_key=handler._api_key())
    rid = str(uuid.uuid4())
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        body = None
    rec.json = body
    if isinstance(body, dict):
        rec.model = body.get("model")
        rec.parameters = dict(body.get("parameters") or {})
    rec.stream = handler.headers.get("X-DashScope-SSE", "").lower() == "enable"
    # Embeddings are made for every stored segment: they take no scripted behaviour and never wait at the
    # gate, so tests that script or hold model calls see only those (``fake.embedding_behavior`` scripts them).
    embedding = kind == "embedding"
    behavior: Behavior | None = (
        getattr(fake, "embedding_behavior", None) if embedding else fake._next_behavior(rec.api_key)
    )
    rec.behavior = behavior
    problem = _problem(kind, body, rec)
    fake._record(rec)
    if kind != "embedding":
        fake._gate(hang=bool(behavior and behavior.hang))
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
    if kind == "embedding":
        texts = body["input"]["texts"]  # type: ignore[index]
        dim = int(rec.parameters.get("dimension") or 1024)
        out = [{"text_index": i, "embedding": embed(t, dim)} for i, t in enumerate(texts)]
        usage = {"total_tokens": sum(text_tokens(t) for t in texts)}
        handler._send_json(200, {"output": {"embeddings": out}, "usage": usage, "request_id": rid})
        return
    text = fake._reply_text(rec, behavior)
    _reply_text(handler, rec, text, rid, behavior.chunk_delay_s if behavior else 0.0)


def _problem(kind: str, body: Any, rec: RecordedRequest) -> str | None:
    if not isinstance(body, dict) or not rec.model:
        return 'Required parameter "model" missing from request.'
    inp = body.get("input") or {}
    if kind == "embedding":
        texts = inp.get("texts")
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
            return "input.texts must be a non-empty list of non-empty strings."
        if len(texts) > MAX_TEXTS:
            return f"batch size is invalid, it should not be larger than {MAX_TEXTS}."
        dim = rec.parameters.get("dimension")
        if dim is not None and dim not in EMBED_DIMS:
            return f"dimension must be one of {EMBED_DIMS}."
        return None
    messages = inp.get("messages")
    if not isinstance(messages, list) or not messages:
        return "Required input parameter missing from request."
    texts = {"system": [], "user": []}  # type: dict[str, list[str]]
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            return "Each text-generation message needs a string content."
        texts["system" if m.get("role") == "system" else "user"].append(m["content"])
    rec.system, rec.prompt = "\n".join(texts["system"]), "\n".join(texts["user"])
    return None


def _usage(rec: RecordedRequest, out_text: str) -> dict[str, int]:
    inp = text_tokens(f"{rec.system}\n{rec.prompt}")
    out = text_tokens(out_text)
    return {"input_tokens": inp, "output_tokens": out, "total_tokens": inp + out}


def _reply_text(handler: Any, rec: RecordedRequest, text: str, rid: str, chunk_delay_s: float) -> None:
    if not rec.stream:
        choice = {"finish_reason": "stop", "message": {"role": "assistant", "content": text}}
        handler._send_json(200, {"output": {"choices": [choice]}, "usage": _usage(rec, text), "request_id": rid})
        return
    incremental = bool(rec.parameters.get("incremental_output"))
    pieces = re.findall(r"\S+\s*|\s+", text) or [""]
    handler._start_sse(200, {"X-Request-ID": rid})
    so_far = ""
    for i, piece in enumerate(pieces, start=1):
        so_far += piece
        last = i == len(pieces)
        msg = {"role": "assistant", "content": piece if incremental else so_far}
        event = {"output": {"choices": [{"message": msg, "finish_reason": "stop" if last else "null"}]},
                 "usage": _usage(rec, so_far), "request_id": rid}  # fmt: skip
        handler._write(f"id:{i}\nevent:result\n:HTTP_STATUS/200\ndata:{json.dumps(event, ensure_ascii=False)}\n\n")
        if chunk_delay_s and not last:
            time.sleep(chunk_delay_s)

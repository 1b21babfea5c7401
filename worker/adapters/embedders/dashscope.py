"""Production text embeddings and the ``ask`` answer model through the unmodified ``dashscope`` SDK.

Embeddings: ``dashscope.TextEmbedding.call`` (``text-embedding-v4`` by default, documents and queries
told apart with ``text_type``). Answers: ``dashscope.Generation.call`` with ``result_format="message"``,
streamed with ``incremental_output`` when a listener wants the text as it arrives. Errors the SDK returns
are classified like describer calls (``transport.classify``) and retried with the same bounded backoff.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import dashscope
import numpy as np
import requests
from dashscope.common.error import AuthenticationError, DashScopeException

from worker.adapters.describers.retry import RetryPolicy, with_retries
from worker.adapters.describers.transport import AUTH_HINT, Reply, classify
from worker.config import Settings
from worker.core.search import EMBED_BATCH
from worker.embedding import normalise
from worker.errors import ConfigError, DescriberAuthError, DescriberRejected, DescriberTransient


def _base(settings: Settings) -> str | None:
    return settings.dashscope.base_url.rstrip("/") if settings.dashscope.base_url else None


def _guard(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except requests.RequestException as exc:
        raise DescriberTransient(f"DashScope unreachable: {type(exc).__name__}: {exc}") from None
    except AuthenticationError:
        raise DescriberAuthError(f"DashScope has no API key for this call — {AUTH_HINT}") from None
    except DashScopeException as exc:
        raise DescriberRejected(f"DashScope SDK refused the request: {type(exc).__name__}: {exc}") from None


def _check(rsp: Any) -> None:
    if int(rsp.status_code) != 200:
        raise classify(int(rsp.status_code), rsp.code, str(rsp.message or ""), rsp.request_id, None)
    if rsp.output is None:
        raise DescriberTransient("DashScope answered 200 without an output")


class DashScopeEmbedder:
    """``TextEmbedding`` vectors (unit length, ``dimension`` values each)."""

    def __init__(self, api_key: str, model: str, dimension: int, policy: RetryPolicy, base_url: str | None) -> None:
        self._key = api_key
        self.model = model
        self.dim = dimension
        self.policy = policy
        if base_url:
            dashscope.base_http_api_url = base_url

    @property
    def name(self) -> str:
        return f"{self.model}/{self.dim}"

    def embed(self, texts: Sequence[str], *, query: bool = False) -> tuple[np.ndarray, int]:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        tokens = 0
        for start in range(0, len(texts), EMBED_BATCH):
            chunk = [t if t.strip() else "empty" for t in texts[start : start + EMBED_BATCH]]

            def attempt(_n: int, c: list[str] = chunk) -> tuple[np.ndarray, int]:
                return self._once(c, query)

            (vectors, used), _ = with_retries(attempt, self.policy, what="embedding")
            out[start : start + len(chunk)] = vectors
            tokens += used
        return normalise(out), tokens

    def _once(self, chunk: list[str], query: bool) -> tuple[np.ndarray, int]:
        rsp = _guard(
            lambda: dashscope.TextEmbedding.call(
                model=self.model,
                input=chunk,
                api_key=self._key,
                text_type="query" if query else "document",
                dimension=self.dim,
            )
        )
        _check(rsp)
        rows = sorted(rsp.output["embeddings"], key=lambda e: int(e["text_index"]))
        if len(rows) != len(chunk) or any(len(r["embedding"]) != self.dim for r in rows):
            raise DescriberTransient("DashScope returned embeddings of the wrong count or size")
        used = int((rsp.usage or {}).get("total_tokens") or 0)
        return np.asarray([r["embedding"] for r in rows], dtype=np.float32), used


OnDelta = Callable[[str], None]


class DashScopeAnswerer:
    """The ``ask`` answer model: one text-generation call, optionally streamed."""

    def __init__(self, api_key: str, model: str, policy: RetryPolicy, base_url: str | None, max_tokens: int) -> None:
        self._key = api_key
        self.model = model
        self.policy = policy
        self.max_tokens = max_tokens
        if base_url:
            dashscope.base_http_api_url = base_url

    def answer(self, system: str, prompt: str, on_delta: OnDelta | None = None) -> Reply:
        reply, _ = with_retries(lambda _n: self._once(system, prompt, on_delta), self.policy, what="ask answer")
        return reply

    def _once(self, system: str, prompt: str, on_delta: OnDelta | None) -> Reply:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}],
            "api_key": self._key,
            "result_format": "message",
            "max_tokens": self.max_tokens,
            "temperature": 0.1,
        }
        if on_delta is None:
            rsp = _guard(lambda: dashscope.Generation.call(**kwargs))
            _check(rsp)
            return Reply(_text(rsp.output), *_usage(rsp.usage), request_id=rsp.request_id or None)
        events = _guard(lambda: dashscope.Generation.call(stream=True, incremental_output=True, **kwargs))
        text, last = "", None
        for rsp in events:
            _check(rsp)
            piece = _text(rsp.output)
            text += piece
            last = rsp
            if piece:
                on_delta(piece)
        if last is None:
            raise DescriberTransient("DashScope's stream ended before the reply was complete")
        return Reply(text, *_usage(last.usage), request_id=last.request_id or None)


def _text(output: Any) -> str:
    content = output["choices"][0]["message"]["content"]
    return content if isinstance(content, str) else "".join(str(c.get("text", "")) for c in content)


def _usage(usage: Any) -> tuple[int, int, int]:
    u = dict(usage or {})
    return int(u.get("input_tokens") or 0), int(u.get("output_tokens") or 0), 0


def _key(settings: Settings) -> str:
    key = settings.dashscope_api_key
    if not key:
        raise ConfigError("DashScope embeddings and answers need an API key: set DASHSCOPE_API_KEY")
    return key


def build_embedder(settings: Settings) -> DashScopeEmbedder:
    a = settings.ask
    return DashScopeEmbedder(
        _key(settings), a.embed_model, a.embed_dimension, RetryPolicy.of(settings.dashscope), _base(settings)
    )


def build_answerer(settings: Settings) -> DashScopeAnswerer:
    a = settings.ask
    return DashScopeAnswerer(_key(settings), a.model, RetryPolicy.of(settings.dashscope), _base(settings), a.max_tokens)

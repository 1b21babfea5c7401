"""DashScope's OpenAI-compatible mode (``/compatible-mode/v1``) with the ``openai`` client.

Frames travel as ``data:`` URIs in a ``{"type": "video", "video": [...], "fps": F}`` item (no upload);
DashScope-only parameters go in ``extra_body``. Errors end as in the native transport.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any, cast

import openai

from worker.adapters.describers import wire
from worker.adapters.describers.inline import data_uri
from worker.adapters.describers.native import reply_of
from worker.adapters.describers.transport import CallParams, OnText, Reply, classify, parse_retry_after
from worker.errors import DescriberTransient


class OpenAITransport:
    name = "openai"

    def __init__(self, api_key: str, base_url: str) -> None:
        self._client = openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=0)

    def __repr__(self) -> str:
        return "OpenAITransport()"

    def video(
        self, system: str, prompt: str, frames: Sequence[str], fps: float, params: CallParams, on_text: OnText | None
    ) -> Reply:
        item: dict[str, Any] = {"type": "video", "video": [data_uri(p) for p in frames], "fps": fps}
        if params.max_pixels:
            item["max_pixels"] = params.max_pixels
        user = {"role": "user", "content": [item, {"type": "text", "text": prompt}]}
        return self._call([{"role": "system", "content": system}, user], params, on_text)

    def text(self, system: str, prompt: str, params: CallParams) -> Reply:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
        return self._call(messages, replace(params, stream=False), None)

    def _call(self, messages: list[dict[str, Any]], params: CallParams, on_text: OnText | None) -> Reply:
        att = wire.current()
        kwargs: dict[str, Any] = {
            "model": params.model,
            "messages": messages,
            "timeout": att.remaining("generation"),  # the client never retries (max_retries=0)
            "extra_body": {"vl_high_resolution_images": params.vl_high_resolution_images},
        }
        for name in ("temperature", "top_p", "seed", "max_tokens"):
            if getattr(params, name) is not None:
                kwargs[name] = getattr(params, name)
        if params.stream:
            kwargs.update(stream=True, stream_options={"include_usage": True})
        create = cast(Any, self._client.chat.completions.create)
        att.generation += 1
        try:
            if params.stream:
                return _collect(create(**kwargs), on_text)
            return _reply(create(**kwargs))
        except openai.APIStatusError as exc:
            body = exc.body if isinstance(exc.body, dict) else {}
            message = str(body.get("message") or exc.message)
            retry_after = parse_retry_after(exc.response.headers.get("retry-after"))
            raise classify(
                exc.status_code, exc.code or body.get("code"), message, exc.request_id, retry_after
            ) from None
        except (openai.APIConnectionError, openai.APIResponseValidationError) as exc:
            att.lost = att.lost or isinstance(exc, openai.APITimeoutError) or wire.was_sent(exc.__cause__ or exc)
            raise DescriberTransient(f"DashScope (compatible mode) unreachable: {type(exc).__name__}: {exc}") from None
        except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
            raise DescriberTransient(f"DashScope sent a malformed response ({type(exc).__name__})") from None


def _reply(completion: Any) -> Reply:
    if not getattr(completion, "choices", None):
        raise DescriberTransient("DashScope (compatible mode) answered without choices")
    text = completion.choices[0].message.content or ""
    return reply_of(text, completion.usage, completion.id or None)


def _collect(chunks: Iterable[Any], on_text: OnText | None) -> Reply:
    text = ""
    usage: Any = None
    rid: str | None = None
    finished = False
    for chunk in chunks:
        rid = rid or chunk.id
        usage = chunk.usage or usage
        for choice in chunk.choices:
            piece = choice.delta.content or ""
            text += piece
            if piece and on_text is not None:
                on_text(piece, text)
            finished = finished or choice.finish_reason is not None
    if not finished:
        raise DescriberTransient("DashScope's stream (compatible mode) ended before the reply was complete")
    return reply_of(text, usage, rid)

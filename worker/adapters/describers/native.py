"""The native DashScope wire through the real, unmodified ``dashscope`` SDK.

Frames go inside the request as data URIs (``inline.py``) or, for a segment too large for that (or with
``dashscope.frames_as: upload``), are uploaded by ``uploads.py`` (deadline-bound, counted, re-used across
retries) and the SDK is given their ``oss://`` URLs. Each call runs on a ``wire.CountingSession`` (no
hidden re-send, every request counted, the attempt's deadline applied). Text-only calls on a text model
(the job summary's ``dashscope.summary_model``) use ``dashscope.Generation`` (``text-generation``); VL models use
``MultiModalConversation``. The API key is passed per call and never logged, stored or echoed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import dashscope
import requests
from dashscope.common.error import AuthenticationError, DashScopeException, TimeoutException, UploadFileException

from worker.adapters.describers import inline, wire
from worker.adapters.describers.transport import (
    AUTH_HINT,
    CallParams,
    OnText,
    Reply,
    classify,
    header,
    parse_retry_after,
)
from worker.adapters.describers.uploads import REUSE_DEFAULT_S, upload_frames
from worker.core.money import read_usage
from worker.errors import DescriberAuthError, DescriberError, DescriberRejected, DescriberTransient

VL_MARKERS = ("-vl", "vl-", "qvq", "qwen3.5", "qwen3.6", "qwen3.7", "omni")


def is_text_model(model: str) -> bool:
    """A model that takes text only (``qwen-plus``, ``qwen-turbo``, ``qwen-flash`` ...)."""
    name = model.lower()
    return not any(m in name for m in VL_MARKERS)


def _messages(system: str, prompt: str, urls: list[str], fps: float, params: CallParams) -> list[dict[str, Any]]:
    """The system and user messages of a frame-list call (``{"video": [...], "fps": F}`` then the prompt)."""
    item: dict[str, Any] = {"video": urls, "fps": fps}
    if params.max_pixels:
        item["max_pixels"] = params.max_pixels
    return [{"role": "system", "content": [{"text": system}]}, {"role": "user", "content": [item, {"text": prompt}]}]


class NativeTransport:
    """``dashscope.MultiModalConversation.call`` (or ``Generation.call`` for text models)."""

    name = "native"

    def __init__(
        self, api_key: str, base_url: str | None = None, reuse_s: float = REUSE_DEFAULT_S, frames_as: str = "auto"
    ) -> None:
        self._api_key = api_key
        self.reuse_s = reuse_s
        self.frames_as = frames_as
        if base_url:  # the SDK reads this module attribute at call time
            dashscope.base_http_api_url = base_url.rstrip("/")

    def __repr__(self) -> str:
        return "NativeTransport()"

    def video(
        self, system: str, prompt: str, frames: Sequence[str], fps: float, params: CallParams, on_text: OnText | None
    ) -> Reply:
        if self.frames_as == "data_uri" or (self.frames_as == "auto" and inline.fits(frames)):
            if len(frames) > inline.MAX_FRAMES:
                raise DescriberRejected(
                    f"{len(frames)} frames in one request; DashScope takes at most {inline.MAX_FRAMES} as data "
                    "URIs: use dashscope.frames_as: upload (or auto), or shorter segments"
                )
            return self._call(_messages(system, prompt, [inline.data_uri(p) for p in frames], fps, params), params,
                              on_text)  # fmt: skip
        att = wire.current()
        base = str(dashscope.base_http_api_url or "https://dashscope.aliyuncs.com/api/v1")
        for fresh in (False, True):
            urls, reused = upload_frames(frames, params.model, self._api_key, base, att, self.reuse_s, fresh=fresh)
            try:
                return self._call(_messages(system, prompt, urls, fps, params), params, on_text)
            except DescriberRejected as exc:
                if fresh or not reused or "URL" not in exc.message:
                    raise
                # a re-used oss:// URL the service no longer knows (a 400, not billed): upload those frames again
        raise AssertionError("unreachable")

    def text(self, system: str, prompt: str, params: CallParams) -> Reply:
        if is_text_model(params.model):
            messages: list[dict[str, Any]] = [
                {"role": "system", "content": system},
                {"role": "user", "content": prompt},
            ]
            return self._call(messages, replace(params, stream=False), None, api=dashscope.Generation)
        messages = [{"role": "system", "content": [{"text": system}]}, {"role": "user", "content": [{"text": prompt}]}]
        return self._call(messages, replace(params, stream=False), None)

    def _call(
        self, messages: list[dict[str, Any]], params: CallParams, on_text: OnText | None, api: Any = None
    ) -> Reply:
        att = wire.current()
        kwargs: dict[str, Any] = {
            "model": params.model,
            "messages": messages,
            "api_key": self._api_key,
            "result_format": "message",
            "request_timeout": max(1, int(att.remaining("generation") + 0.999)),
        }
        if api is None:
            kwargs["vl_high_resolution_images"] = params.vl_high_resolution_images
        for name in ("temperature", "top_p", "seed", "max_tokens"):
            if getattr(params, name) is not None:
                kwargs[name] = getattr(params, name)
        if params.stream:
            kwargs.update(stream=True, incremental_output=True)
        with wire.CountingSession(att) as session:
            try:
                rsp: Any = (api or dashscope.MultiModalConversation).call(session=session, **kwargs)
                return _collect(rsp, on_text, att) if params.stream else _reply(rsp)
            except requests.exceptions.JSONDecodeError:
                raise DescriberTransient("DashScope sent a response that is not JSON") from None
            except (requests.RequestException, TimeoutException) as exc:
                raise DescriberTransient(f"DashScope unreachable: {type(exc).__name__}: {exc}") from None
            except AuthenticationError:
                raise DescriberAuthError(f"DashScope has no API key for this call — {AUTH_HINT}") from None
            except UploadFileException as exc:
                raise _upload_error(str(exc)) from None
            except DashScopeException as exc:
                raise DescriberRejected(f"DashScope SDK refused the request: {type(exc).__name__}: {exc}") from None
            except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
                raise DescriberTransient(f"DashScope sent a malformed response ({type(exc).__name__})") from None


def _upload_error(message: str) -> DescriberError:
    """``UploadFileException`` (raised, not returned): a refused key is fatal, the rest is transient."""
    if any(code in message for code in ("InvalidApiKey", "AccessDenied", "code: 401", "code: 403")):
        return DescriberAuthError(f"DashScope refused the frame upload: {message} — {AUTH_HINT}")
    return DescriberTransient(f"uploading frames to DashScope failed: {message}")


def _error_of(rsp: Any) -> DescriberError:
    retry_after = parse_retry_after(header(getattr(rsp, "headers", None), "Retry-After"))
    return classify(int(rsp.status_code), rsp.code, str(rsp.message or ""), rsp.request_id, retry_after)


def _text_of(output: Any) -> tuple[str, str | None]:
    choice = output["choices"][0]
    content = choice["message"]["content"]
    text = content if isinstance(content, str) else "".join(str(c.get("text", "")) for c in content)
    return text, choice.get("finish_reason")


def reply_of(text: str, usage: Any, request_id: str | None) -> Reply:
    """A Reply from the text and whatever usage fields the service sent (``money.read_usage``)."""
    u = read_usage(dict(usage) if usage is not None and not isinstance(usage, dict) else usage)
    return Reply(
        text,
        u.input_tokens,
        u.output_tokens,
        u.visual or 0,
        request_id=request_id,
        visual_reported=u.visual is not None,
        cached_tokens=u.cached_tokens,
    )


def _reply(rsp: Any) -> Reply:
    if int(rsp.status_code) != 200:
        raise _error_of(rsp)
    if rsp.output is None:
        raise DescriberTransient("DashScope answered 200 without an output")
    text, _ = _text_of(rsp.output)
    return reply_of(text, rsp.usage, rsp.request_id or None)


def _collect(events: Iterable[Any], on_text: OnText | None, att: wire.Attempt) -> Reply:
    """Stream with ``incremental_output``: each event carries the new piece; usage repeats in each.
    The attempt's deadline holds over the whole stream, not only between two events."""
    text = ""
    last: Any = None
    finished = False
    for rsp in events:
        if int(rsp.status_code) != 200:
            raise _error_of(rsp)
        piece, finish = _text_of(rsp.output)
        text += piece
        last = rsp
        if piece and on_text is not None:
            on_text(piece, text)
        finished = finished or (finish not in (None, "", "null"))
        if not finished and time.monotonic() > att.deadline:
            att.lost = True  # the request was processed and may be billed in full
            raise DescriberTransient(f"the streamed reply passed the attempt's deadline of {att.timeout_s:g}s")
    if last is None or not finished:
        raise DescriberTransient("DashScope's stream ended before the reply was complete")
    return reply_of(text, last.usage, last.request_id or None)

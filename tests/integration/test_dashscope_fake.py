"""The loopback DashScope fake, driven by the real ``dashscope`` SDK and the ``openai`` client."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import cv2
import dashscope
import httpx
import numpy as np
import openai
import pytest
import requests
from dashscope.common.error import UploadFileException

from tests.fakes.dashscope_server import (
    Behavior,
    FakeDashScope,
    frame_limit,
    image_size,
    token_factor,
    video_tokens,
)

MODEL = "qwen-vl-max-latest"
KEY = "sk-test"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeDashScope]:
    old_no_proxy = os.environ.get("NO_PROXY")
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    old_url = dashscope.base_http_api_url
    with FakeDashScope() as server:
        dashscope.base_http_api_url = server.base_http_api_url
        yield server
    dashscope.base_http_api_url = old_url
    if old_no_proxy is None:
        os.environ.pop("NO_PROXY", None)
    else:
        os.environ["NO_PROXY"] = old_no_proxy


@pytest.fixture(autouse=True)
def _clean(fake: FakeDashScope) -> Iterator[None]:
    fake.reset()
    yield
    fake.reset()


def _jpeg(width: int = 640, height: int = 480, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


def _write_frames(directory: Path, n: int, width: int = 640, height: int = 480) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    paths = []
    for i in range(n):
        path = directory / f"clip_{tag}_frame_{i:03d}.jpg"
        path.write_bytes(_jpeg(width, height, seed=i))
        paths.append(path)
    return paths


def _data_uri(data: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(data).decode()


def _messages(video: list[str], fps: float = 2, text: str = "Describe") -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": [{"text": "sys"}]},
        {"role": "user", "content": [{"video": video, "fps": fps}, {"text": text}]},
    ]


def _call(video: list[str], **kwargs: Any) -> Any:
    kwargs.setdefault("api_key", KEY)
    kwargs.setdefault("model", MODEL)
    return dashscope.MultiModalConversation.call(messages=_messages(video), **kwargs)


def _data_frames(n: int = 4) -> list[str]:
    return [_data_uri(_jpeg(seed=i)) for i in range(n)]


def _text(rsp: Any) -> str:
    return str(rsp.output.choices[0].message.content[0]["text"])


# ---------------------------------------------------------------------------------------------- token maths


@pytest.mark.parametrize(
    ("model", "n", "w", "h", "expected"),
    [
        ("qwen-vl-max-latest", 4, 640, 480, 602),
        ("qwen-vl-max-latest", 16, 1280, 720, 4754),
        ("qwen-vl-max-latest", 64, 1280, 720, 19010),
        ("qwen3-vl-plus", 16, 1280, 720, 4754),
        ("qwen2.5-vl-72b-instruct", 4, 640, 480, 784),
        ("qwen2.5-vl-72b-instruct", 16, 1280, 720, 5762),
        ("qvq-max", 64, 1280, 720, 23042),
    ],
)
def test_video_tokens_matches_documented_examples(model: str, n: int, w: int, h: int, expected: int) -> None:
    assert video_tokens(n, w, h, model) == expected


def test_model_tables() -> None:
    assert token_factor("qwen-vl-max") == 32
    assert token_factor("qwen-vl-plus-latest") == 32
    assert token_factor("qwen-vl-max-2025-04-08") == 28
    assert token_factor("qwen-vl-max-2025-08-13") == 32
    assert token_factor("qwen2.5-vl-7b-instruct") == 28
    assert frame_limit("qwen-vl-max-latest") == 512
    assert frame_limit("qwen3-vl-plus") == 2000
    assert frame_limit("qwen3-vl-flash-2025-10-15") == 2000
    assert video_tokens(4, 640, 480, MODEL, max_pixels=64 * 32 * 32) < video_tokens(4, 640, 480, MODEL)


def test_image_size_reads_jpeg_and_png() -> None:
    assert image_size(_jpeg(333, 217)) == (333, 217)
    ok, png = cv2.imencode(".png", np.zeros((50, 70, 3), np.uint8))
    assert ok
    assert image_size(png.tobytes()) == (70, 50)
    with pytest.raises(ValueError):
        image_size(b"not an image")


# ---------------------------------------------------------------------------------------------- native API


def test_local_frames_upload_then_generate(fake: FakeDashScope, tmp_path: Path) -> None:
    paths = _write_frames(tmp_path, 6)
    rsp = _call([f"file://{p}" for p in paths])

    assert rsp.status_code == HTTPStatus.OK, rsp
    assert fake.kinds() == ["getPolicy"] + ["ossUpload"] * 6 + ["generation"]
    policy = fake.requests_of("getPolicy")[0]
    assert policy.model == MODEL and policy.api_key == KEY
    uploads = fake.uploads
    for rec, path in zip(fake.requests_of("ossUpload"), paths, strict=True):
        assert rec.upload_key is not None and rec.upload_key.endswith(path.name)
        assert "authorization" not in rec.headers
        assert uploads[rec.upload_key] == path.read_bytes()

    gen = fake.last("generation")
    assert gen.headers["x-dashscope-ossresourceresolve"] == "enable"
    assert gen.api_key == KEY and gen.model == MODEL
    assert gen.fps == 2
    assert gen.frames == [[p.read_bytes() for p in paths]]
    assert all(u.startswith("oss://") for u in gen.videos[0].urls)
    assert gen.prompt == "Describe" and gen.system == "sys"

    expected = video_tokens(6, 640, 480, MODEL)
    assert rsp.usage["video_tokens"] == expected
    assert rsp.usage["input_tokens_details"]["video_tokens"] == expected
    text_tok = rsp.usage["input_tokens_details"]["text_tokens"]
    assert rsp.usage["input_tokens"] == expected + text_tok
    assert rsp.usage["total_tokens"] == rsp.usage["input_tokens"] + rsp.usage["output_tokens"]
    assert rsp.output.choices[0].finish_reason == "stop"
    assert _text(rsp).startswith(f"[fake {MODEL}] video[0]: 6 frames @ fps=2")
    assert rsp.request_id


def test_doc_example_through_the_sdk(fake: FakeDashScope) -> None:
    rsp = _call(_data_frames(4))
    assert rsp.status_code == HTTPStatus.OK
    assert rsp.usage["video_tokens"] == 602


def test_data_uri_frames_skip_upload(fake: FakeDashScope) -> None:
    frames = [_jpeg(seed=i) for i in range(5)]
    rsp = _call([_data_uri(f) for f in frames])
    assert rsp.status_code == HTTPStatus.OK
    assert fake.kinds() == ["generation"]
    gen = fake.last()
    assert "x-dashscope-ossresourceresolve" not in gen.headers
    assert gen.frames == [frames]
    assert rsp.usage["video_tokens"] == video_tokens(5, 640, 480, MODEL)


def test_three_frames_rejected(fake: FakeDashScope) -> None:
    rsp = _call(_data_frames(3))
    assert rsp.status_code == HTTPStatus.BAD_REQUEST
    assert rsp.code == "InvalidParameter"
    assert "range of sequence images shoule be (4, 512)" in rsp.message
    assert rsp.output is None


def test_frame_limit_override(fake: FakeDashScope) -> None:
    fake.frame_limits["qwen-vl-plus"] = 4
    try:
        rsp = _call(_data_frames(5), model="qwen-vl-plus")
    finally:
        fake.frame_limits.clear()
    assert rsp.status_code == HTTPStatus.BAD_REQUEST
    assert "(4, 4)" in rsp.message


def test_duplicate_basename_is_409_and_sdk_raises(fake: FakeDashScope, tmp_path: Path) -> None:
    a = _write_frames(tmp_path / "a", 4)
    b = tmp_path / "b" / a[0].name
    b.parent.mkdir()
    b.write_bytes(a[0].read_bytes())
    with pytest.raises(UploadFileException):
        _call([f"file://{p}" for p in [*a, b]])
    assert fake.requests_of("ossUpload")[-1].response_status == 409
    assert fake.requests_of("generation") == []


def test_bad_key(fake: FakeDashScope, tmp_path: Path) -> None:
    rsp = _call(_data_frames(), api_key="nope")
    assert (rsp.status_code, rsp.code) == (401, "InvalidApiKey")
    with pytest.raises(UploadFileException):
        _call([f"file://{p}" for p in _write_frames(tmp_path, 4)], api_key="nope")


def test_policy_and_upload_failures_raise(fake: FakeDashScope, tmp_path: Path) -> None:
    frames = [f"file://{p}" for p in _write_frames(tmp_path, 4)]
    fake.policy_behavior = Behavior.error("Throttling.RateQuota")
    with pytest.raises(UploadFileException, match=r"Throttling\.RateQuota"):
        _call(frames)
    fake.policy_behavior = None
    fake.upload_behavior = Behavior.error("InternalError")
    with pytest.raises(UploadFileException):
        _call(frames)
    assert fake.requests_of("generation") == []


def test_oss_urls_need_resolve_header_and_known_key(fake: FakeDashScope, tmp_path: Path) -> None:
    assert _call([f"file://{p}" for p in _write_frames(tmp_path, 4)]).status_code == HTTPStatus.OK
    urls = fake.last("generation").videos[0].urls
    url = fake.base_http_api_url + "/services/aigc/multimodal-generation/generation"
    auth = {"Authorization": f"Bearer {KEY}"}

    def post(video: list[str], headers: dict[str, str]) -> httpx.Response:
        body = {"model": MODEL, "input": {"messages": _messages(video)}, "parameters": {}}
        return httpx.post(url, json=body, headers={**auth, **headers}, timeout=10)

    resolve = {"X-DashScope-OssResourceResolve": "enable"}
    assert post(urls, resolve).status_code == 200
    missing_header = post(urls, {})
    assert missing_header.status_code == 400
    assert "does not appear to be valid" in missing_header.json()["message"]
    assert post([*urls[:3], urls[3] + "x"], resolve).json()["code"] == "InvalidParameter"
    other_model = {"model": "qwen-vl-plus", "input": {"messages": _messages(urls)}, "parameters": {}}
    assert httpx.post(url, json=other_model, headers={**auth, **resolve}, timeout=10).status_code == 400


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("InvalidParameter", 400),
        ("DataInspectionFailed", 400),
        ("InvalidApiKey", 401),
        ("AccessDenied", 403),
        ("Throttling.RateQuota", 429),
        ("InternalError", 500),
        ("ServiceUnavailable", 503),
    ],
)
def test_injected_errors_are_returned(fake: FakeDashScope, code: str, status: int) -> None:
    fake.enqueue(Behavior.error(code))
    rsp = _call(_data_frames())
    assert rsp.status_code == status
    assert rsp.code == code
    assert rsp.message
    assert rsp.output is None
    assert len(fake.requests_of("generation")) == 1  # the SDK does not retry HTTP errors
    if status == 429:
        assert rsp.headers["Retry-After"] == "1"
    assert fake.pending == 0
    assert _call(_data_frames()).status_code == HTTPStatus.OK  # queue consumed


def test_key_rule_and_default_behavior(fake: FakeDashScope) -> None:
    fake.key_behaviors["sk-throttled"] = Behavior.error("Throttling.RateQuota", retry_after=7)
    assert _call(_data_frames(), api_key="sk-throttled").headers["Retry-After"] == "7"
    assert _call(_data_frames()).status_code == HTTPStatus.OK
    fake.default_behavior = Behavior.error("InternalError")
    assert _call(_data_frames()).status_code == 500


def test_scripted_reply(fake: FakeDashScope) -> None:
    doc = json.dumps({"events": [{"t": 0.0, "text": "a cat"}]})
    fake.enqueue(Behavior.reply(doc))
    rsp = _call(_data_frames())
    assert json.loads(_text(rsp)) == {"events": [{"t": 0.0, "text": "a cat"}]}
    assert rsp.usage["output_tokens"] == len(doc) // 4 + 1
    fake.reply_fn = lambda rec: f"{rec.model}:{len(rec.frames[0])}:{rec.prompt}"
    assert _text(_call(_data_frames(6))) == f"{MODEL}:6:Describe"


def test_stream_incremental(fake: FakeDashScope) -> None:
    full = _text(_call(_data_frames()))
    chunks = list(_call(_data_frames(), stream=True, incremental_output=True))
    assert len(chunks) > 3
    assert all(c.status_code == HTTPStatus.OK for c in chunks)
    assert "".join(_text(c) for c in chunks) == full
    assert [c.output.choices[0].finish_reason for c in chunks][-2:] == ["null", "stop"]
    assert chunks[-1].usage["video_tokens"] == 602
    gen = fake.last("generation")
    assert gen.stream and gen.headers["x-dashscope-sse"] == "enable"


def test_stream_sdk_merges_when_incremental_false(fake: FakeDashScope) -> None:
    full = _text(_call(_data_frames()))
    chunks = list(_call(_data_frames(), stream=True, incremental_output=False))
    assert _text(chunks[-1]) == full
    assert fake.last("generation").parameters["incremental_output"] is True  # SDK rewrites it


def test_stream_cumulative_on_the_wire(fake: FakeDashScope) -> None:
    body = {"model": MODEL, "input": {"messages": _messages(_data_frames())}, "parameters": {}}
    headers = {"Authorization": f"Bearer {KEY}", "X-DashScope-SSE": "enable"}
    url = fake.base_http_api_url + "/services/aigc/multimodal-generation/generation"
    with httpx.stream("POST", url, json=body, headers=headers, timeout=10) as rsp:
        assert rsp.headers["content-type"].startswith("text/event-stream")
        lines = list(rsp.iter_lines())
    assert lines[:3] == ["id:1", "event:result", ":HTTP_STATUS/200"]
    texts = [
        json.loads(x[5:])["output"]["choices"][0]["message"]["content"][0]["text"] for x in lines if x[:5] == "data:"
    ]
    assert all(texts[i + 1].startswith(texts[i]) for i in range(len(texts) - 1))


def test_stream_errors(fake: FakeDashScope) -> None:
    fake.enqueue(Behavior.error("Throttling.RateQuota"))
    (only,) = list(_call(_data_frames(), stream=True, incremental_output=True))
    assert (only.status_code, only.code) == (429, "Throttling.RateQuota")

    fake.enqueue(Behavior(stream_error_after=2, code="InternalError", message="boom"))
    chunks = list(_call(_data_frames(), stream=True, incremental_output=True))
    assert [c.status_code for c in chunks] == [200, 200, 400]  # the SDK maps in-stream errors to 400
    assert chunks[-1].code == "InternalError"


# ---------------------------------------------------------------------------------------------- faults


def test_garbage_body_fails_in_the_sdk(fake: FakeDashScope) -> None:
    fake.enqueue(Behavior(garbage=True))
    with pytest.raises(requests.exceptions.JSONDecodeError):
        _call(_data_frames())


def test_connection_reset_fails_in_the_sdk(fake: FakeDashScope) -> None:
    fake.default_behavior = Behavior(reset=True)
    with pytest.raises(requests.exceptions.ConnectionError):
        _call(_data_frames())
    gens = fake.requests_of("generation")
    assert len(gens) == 2  # the SDK re-sends once after a dropped connection
    assert all(g.response_status is None for g in gens)
    fake.default_behavior = None
    assert _call(_data_frames()).status_code == HTTPStatus.OK


def test_hold_and_release(fake: FakeDashScope) -> None:
    results: list[Any] = []
    fake.hold()
    worker = threading.Thread(target=lambda: results.append(_call(_data_frames())))
    worker.start()
    assert fake.wait_for_held(1, timeout=10)
    assert fake.arrived.is_set()
    assert results == [] and fake.last("generation").response_status is None
    fake.release()
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert results[0].status_code == HTTPStatus.OK


def test_hang_behavior_and_client_timeout(fake: FakeDashScope) -> None:
    fake.enqueue(Behavior(hang=True))
    with pytest.raises(requests.exceptions.ReadTimeout):
        _call(_data_frames(), request_timeout=0.5)
    assert fake.held_count == 1
    fake.release()
    deadline = time.monotonic() + 5
    while fake.held_count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.held_count == 0


def test_delay(fake: FakeDashScope) -> None:
    fake.enqueue(Behavior(delay_s=0.3))
    start = time.monotonic()
    assert _call(_data_frames()).status_code == HTTPStatus.OK
    assert time.monotonic() - start >= 0.3


# ---------------------------------------------------------------------------------------------- OpenAI mode


def _compat_messages(frames: list[str]) -> list[Any]:
    return [
        {"role": "system", "content": [{"type": "text", "text": "sys"}]},
        {
            "role": "user",
            "content": [{"type": "video", "video": frames, "fps": 2}, {"type": "text", "text": "Describe"}],
        },
    ]


def test_openai_compatible(fake: FakeDashScope) -> None:
    frames = _data_frames(4)
    native = _call(frames)
    client = openai.OpenAI(api_key=KEY, base_url=fake.compatible_base_url, max_retries=0)
    completion = client.chat.completions.create(model=MODEL, messages=_compat_messages(frames))
    assert completion.choices[0].message.content == _text(native)
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == native.usage["input_tokens"]
    assert usage.completion_tokens == native.usage["output_tokens"]
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.model_dump()["video_tokens"] == 602
    rec = fake.last("compatible")
    assert rec.fps == 2 and rec.api_key == KEY and len(rec.frames[0]) == 4

    stream = client.chat.completions.create(
        model=MODEL,
        messages=_compat_messages(frames),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == _text(native)
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == usage.prompt_tokens


def test_openai_compatible_errors(fake: FakeDashScope) -> None:
    client = openai.OpenAI(api_key=KEY, base_url=fake.compatible_base_url, max_retries=0)
    fake.enqueue(Behavior.error("Throttling.RateQuota"))
    with pytest.raises(openai.RateLimitError) as rate:
        client.chat.completions.create(model=MODEL, messages=_compat_messages(_data_frames()))
    assert rate.value.code == "limit_requests"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=MODEL, messages=_compat_messages(_data_frames(3)))
    assert bad.value.code == "invalid_parameter_error"
    bad_key = openai.OpenAI(api_key="nope", base_url=fake.compatible_base_url, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as auth:
        bad_key.chat.completions.create(model=MODEL, messages=_compat_messages(_data_frames()))
    assert auth.value.code == "invalid_api_key"


# ---------------------------------------------------------------------------------------------- standalone


def test_standalone_entry_point() -> None:
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.dashscope_server", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("FakeDashScope base_http_api_url=http://127.0.0.1:")
        base = line.split("=", 1)[1]
        rsp = httpx.get(
            f"{base}/uploads",
            params={"action": "getPolicy", "model": MODEL},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=5,
        )
        assert rsp.status_code == 200
        assert rsp.json()["data"]["upload_host"].endswith("/__oss__/dashscope-file-mgr")
    finally:
        proc.terminate()
        proc.wait(timeout=5)

"""Property-based API fuzzing over the served OpenAPI schema, on both engines.

Requests are drawn from ``/openapi.json`` itself (valid speech requests from the ``SpeechRequest`` schema,
then each mutated: a field replaced by any JSON value, unknown fields, other content types, raw bytes,
the wrong method), so the schema and the behaviour cannot drift apart unnoticed. Every answer must be:
below 500; in OpenAI's error shape when 4xx, with a status the schema documents for that operation;
audio or SSE of a documented content type when 200.

The studio's endpoints get the same treatment against a real prepared dataset and voice evaluation: names
drawn from the real ones, traversal, NUL and any text (percent-encoded into the path), edits drawn from
the ``ClipEdit`` schema and mutated, with or without ``If-Match``.

The seed is fixed (``derandomize``), so a failure reproduces. ``FUZZ_EXAMPLES`` sets the number of requests
per engine (default 100, to keep `make test` short); the long run (3000) is documented in
docs/reliability.md.

The tiny random model never chooses end-of-speech by itself, so on the embedded engine a speech request
gets a small ``max_tokens`` when it has none (as any client of that model must send), and drawn budgets
are capped: the fuzz is about the HTTP edge, not about generating long audio on a CPU.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voicelab import orpheus
from voicelab.server import jobs
from voicelab.server.app import create_app
from voicelab.server.settings import Settings
from voicelab.testing.datasets import write_reviewed_dataset
from voicelab.testing.fake_vllm import FakeVLLMServer
from voicelab.testing.server import local_client
from voicelab.testing.voices import build_tiny_voice, write_voice_folder

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
FUZZ_INPUT_CHARS = 80
"""A small input limit keeps the derived budgets (and so the CPU time per request) small."""
LOCAL_MAX_FRAMES = 3
LOCAL_MAX_TOKENS = LOCAL_MAX_FRAMES * orpheus.CODES_PER_FRAME + 1
SPEECH = "/v1/audio/speech"
FRAMEWORK_STATUSES = {"404", "405"}
"""Answered by the router for any path or method, so not listed per operation."""

CHARACTERS = st.characters(exclude_categories=()) | st.sampled_from("\ud800\udfff\x00\n <>")
"""Any code point, lone surrogates included (valid JSON as "\\ud800", not valid text)."""
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(CHARACTERS, max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def from_schema(schema: dict, openapi: dict) -> st.SearchStrategy:
    """Values valid under ``schema`` (the subset of JSON Schema FastAPI emits for these models)."""
    if "$ref" in schema:
        return from_schema(openapi["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]], openapi)
    if "anyOf" in schema:
        return st.one_of([from_schema(option, openapi) for option in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    kind = schema.get("type")
    if kind == "string":
        text = st.text(CHARACTERS, min_size=schema.get("minLength", 0), max_size=schema.get("maxLength", 40))
        pattern = schema.get("pattern")
        return text.filter(lambda s: re.search(pattern, s)) if pattern else text
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        return st.floats(
            low,
            high,
            allow_nan=False,
            allow_infinity=False,
            exclude_min="exclusiveMinimum" in schema,
            exclude_max="exclusiveMaximum" in schema,
        )
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "object":
        properties = schema.get("properties", {})
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {k: from_schema(v, openapi) for k, v in properties.items() if k in required},
            optional={k: from_schema(v, openapi) for k, v in properties.items() if k not in required},
        )
    raise AssertionError(f"the fuzz test does not know schema {schema}: extend from_schema")


def speech_schema(openapi: dict) -> dict:
    return openapi["components"]["schemas"]["SpeechRequest"]


def speech_bodies(openapi: dict, voice: str, *, local: bool) -> st.SearchStrategy[dict]:
    """Valid requests (often for the served voice) and every kind of mutation of them."""
    return _speech_bodies(openapi, voice).map(cap_budget if local else lambda body: body)


def _speech_bodies(openapi: dict, voice: str) -> st.SearchStrategy[dict]:
    valid = from_schema(speech_schema(openapi), openapi)
    served = valid.map(lambda body: {**body, "voice": voice})
    fields = sorted(openapi["components"]["schemas"]["SpeechRequest"]["properties"])
    replaced = st.tuples(served, st.sampled_from([*fields, "unknown_field"]), JSON_VALUES).map(
        lambda t: {**t[0], t[1]: t[2]}
    )
    dropped = st.tuples(served, st.sampled_from(fields)).map(
        lambda t: {k: v for k, v in t[0].items() if k != t[1]}
    )
    return st.one_of(
        served,
        served,
        replaced,
        dropped,
        valid,
        st.dictionaries(st.text(CHARACTERS, max_size=10), JSON_VALUES),
    )


def requests(openapi: dict, voice: str, *, local: bool) -> st.SearchStrategy[dict]:
    """One HTTP request: method, path, headers, body bytes."""
    json_body = speech_bodies(openapi, voice, local=local).map(
        lambda body: {"method": "POST", "path": SPEECH, "json": body}
    )
    odd_body = st.tuples(
        st.sampled_from(["text/plain", "application/x-www-form-urlencoded", "application/json", None]),
        st.one_of(
            st.binary(max_size=64),
            speech_bodies(openapi, voice, local=local).map(lambda b: json.dumps(b).encode()),
        ),
    ).map(lambda t: {"method": "POST", "path": SPEECH, "content": t[1], "content_type": t[0]})
    other = st.tuples(
        st.sampled_from(["GET", "POST", "PUT", "DELETE"]), st.sampled_from(sorted(openapi["paths"]))
    ).map(lambda t: {"method": t[0], "path": t[1]})
    return st.one_of(json_body, json_body, json_body, odd_body, other, studio_requests(openapi))


REAL_NAMES = {
    "name": ["alice"],
    "voice": ["alice"],
    "clip": ["clip_000", "clip_001", "clip_000.wav"],
    "picture": ["similarity.png", "summary.md"],
    "job_id": ["0123456789ab"],
    "kind": ["recordings", "reference"],
    "filename": ["take.wav", "notes.txt"],
}
"""The names that exist in the fuzz's folders, by path parameter: most requests use them, so edits reach
the files."""
HOSTILE_NAMES = ["..", ".", "%2e%2e", "\\..", "\x00", "n" * 256, "clip_000\x00", "alice/../alice"]


def path_segment(name: str) -> str:
    """``name`` percent-encoded as one path segment (lone surrogates as their UTF-8-like bytes). A ``/``
    would split it (the server decodes ``%2F`` before routing) and a bare ``.``/``..`` segment would be
    removed by the HTTP client, so those are dropped or escaped: the request reaches the drawn route."""
    segment = quote(name.replace("/", "").encode("utf-8", "surrogatepass"), safe="") or "x"
    return segment.replace(".", "%2E") if set(segment) == {"."} else segment


def parameter_value(parameter: str) -> st.SearchStrategy[str]:
    real = st.sampled_from(REAL_NAMES[parameter])
    hostile = st.sampled_from(HOSTILE_NAMES) | st.text(CHARACTERS, min_size=1, max_size=12)
    return st.one_of(real, real, real, hostile)


@st.composite
def studio_path(draw, template: str) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: path_segment(draw(parameter_value(m.group(1)))), template)


def studio_requests(openapi: dict) -> st.SearchStrategy[dict]:
    """Reads and edits of the studio's endpoints with drawn names, bodies and If-Match headers."""
    templates = sorted(path for path in openapi["paths"] if path.startswith("/studio/api/"))
    edit = from_schema(openapi["components"]["schemas"]["ClipEdit"], openapi)
    words = st.text(st.characters(categories=["L", "N", "P", "Zs"]), min_size=1, max_size=30)
    plain = st.fixed_dictionaries({"text": words}, optional={"excluded": st.booleans(), "reason": words})
    bodies = (
        plain
        | plain
        | edit
        | st.tuples(edit, st.sampled_from(["text", "excluded", "reason", "typo"]), JSON_VALUES).map(
            lambda t: {**t[0], t[1]: t[2]}
        )
    )
    methods = st.sampled_from(["GET", "PUT", "PUT", "DELETE"])
    if_match = st.none() | st.sampled_from(["*", '"0123456789abcdef"', 'W/"x"', ""])

    @st.composite
    def one(draw) -> dict:
        template = draw(st.sampled_from(templates))
        request = {"method": draw(methods), "path": draw(studio_path(template)), "template": template}
        if request["method"] == "PUT":
            request["json"] = draw(bodies)
        if (tag := draw(if_match)) is not None:
            request["headers"] = {"If-Match": tag}
        return request

    return one()


def cap_budget(body):
    """On the embedded engine: a speech request's max_tokens, at most LOCAL_MAX_TOKENS (see the docstring)."""
    if not isinstance(body, dict):
        return body
    budget = body.get("max_tokens")
    too_long = isinstance(budget, int) and not isinstance(budget, bool) and budget > LOCAL_MAX_TOKENS
    if budget is None or too_long:  # other values stay: they are mutations the server must refuse
        return {**body, "max_tokens": LOCAL_MAX_TOKENS}
    return body


def send(client: TestClient, request: dict):
    headers = dict(request.get("headers", {}))
    if "json" in request:
        content = json.dumps(request["json"]).encode()
        headers["Content-Type"] = "application/json"
    else:
        content = request.get("content")
        if request.get("content_type"):
            headers["Content-Type"] = request["content_type"]
    return client.request(request["method"], request["path"], content=content, headers=headers)


def check(response, request: dict, openapi: dict) -> None:
    where = f"{request['method']} {request['path']} -> {response.status_code}: {response.text[:300]!r}"
    assert response.status_code < 500, where
    operation = (
        openapi["paths"].get(request.get("template", request["path"]), {}).get(request["method"].lower())
    )
    if 400 <= response.status_code < 500:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}, where
        assert isinstance(error["message"], str) and error["message"], where
        assert isinstance(error["type"], str) and isinstance(error["code"], str), where
        documented = set(operation["responses"]) | FRAMEWORK_STATUSES if operation else FRAMEWORK_STATUSES
        assert str(response.status_code) in documented, where
    if response.status_code == 200 and operation is not None:
        media = response.headers["content-type"].split(";")[0]
        assert media in operation["responses"]["200"].get("content", {"application/json": {}}), where


def fuzz(client: TestClient, voice: str, *, local: bool) -> None:
    openapi = client.get("/openapi.json").json()

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(requests(openapi, voice, local=local))
    def one(request):
        check(send(client, request), request, openapi)

    one()


def studio_folders(tmp_path_factory, voices: Path) -> dict[str, Path]:
    """A prepared dataset, an evaluation and a New voice job (taking uploads) for the studio's endpoints;
    returns the folder settings."""
    jobs_dir, raw = tmp_path_factory.mktemp("fuzz_jobs"), tmp_path_factory.mktemp("fuzz_raw")
    store = jobs.JobStore(jobs_dir, raw_dir=raw, prepared_dir=raw, voices_dir=voices)
    job = jobs.Job(REAL_NAMES["job_id"][0], "bob", jobs.UPLOADING, jobs.now())
    store.folder(job.id).mkdir()
    store.save(job)
    prepared = tmp_path_factory.mktemp("fuzz_prepared")
    write_reviewed_dataset(prepared / "alice", {"clip_000": "One.", "clip_001": "Two."}, (3.0, 3.5))
    evaluation = voices / "alice" / "eval"
    evaluation.mkdir(parents=True, exist_ok=True)
    (evaluation / "summary.md").write_text("similarity 0.8\n")
    (evaluation / "similarity.png").write_bytes(b"\x89PNG\r\n\x1a\nfuzz")
    return {"prepared_dir": prepared, "jobs_dir": jobs_dir, "raw_dir": raw}


def test_fuzz_the_embedded_engine(tmp_path_factory, tiny_orpheus_dir, tiny_snac_dir):
    voices = tmp_path_factory.mktemp("fuzz_local_voices")
    build_tiny_voice(voices, "tiny", tiny_orpheus_dir)
    settings_ = Settings(
        **studio_folders(tmp_path_factory, voices),
        voices_dir=voices,
        base_model=str(tiny_orpheus_dir),
        snac_model=str(tiny_snac_dir),
        max_input_chars=FUZZ_INPUT_CHARS,
        log_level="ERROR",
    )
    with local_client(create_app(settings_)) as client:
        fuzz(client, "tiny", local=True)


@pytest.fixture(scope="module")
def vllm_stand_in(tmp_path_factory, tiny_orpheus_dir):
    voices = tmp_path_factory.mktemp("fuzz_vllm_voices")
    write_voice_folder(voices, "alice", base_model=str(tiny_orpheus_dir))
    with FakeVLLMServer(base_model=str(tiny_orpheus_dir)) as server:
        server.voices_dir = voices
        yield server


def test_fuzz_with_the_vllm_stand_in(vllm_stand_in, tmp_path_factory, tiny_orpheus_dir, tiny_snac_dir):
    settings_ = Settings(
        **studio_folders(tmp_path_factory, vllm_stand_in.voices_dir),
        voices_dir=vllm_stand_in.voices_dir,
        vllm_url=vllm_stand_in.url,
        base_model=str(tiny_orpheus_dir),
        snac_model=str(tiny_snac_dir),
        max_input_chars=FUZZ_INPUT_CHARS,
        log_level="ERROR",
    )
    with local_client(create_app(settings_)) as client:
        fuzz(client, "alice", local=False)

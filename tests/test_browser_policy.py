"""Other web sites kept out: the Host allow-list, same-origin writes, the key on every write, and the
headers every answer carries (CSP, no framing, nosniff); an SVG is never shown inline at its address."""

from __future__ import annotations

import re

import pytest
from fastapi import Request

from voicelab.dataset import read_transcript
from voicelab.server import browser_policy as bp
from voicelab.server.app import create_app
from voicelab.server.settings import Settings, SettingsError, load_settings
from voicelab.server.studio import STATIC_DIR
from voicelab.testing.datasets import write_reviewed_dataset
from voicelab.testing.server import idle_backend, local_client
from voicelab.testing.voices import write_voice_folder

KEY = "policy-key"
BASE = "org/base"
TEXTS = {"clip_000": "First words.", "clip_001": "Second words."}
CLIP = "/studio/api/datasets/alice/clips/clip_000"
RELOAD = "/v1/voices/reload"
EVIL_SVG = '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.domain)</script></svg>'


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("policy")
    write_reviewed_dataset(root / "prepared" / "alice", TEXTS, (3.0, 3.5))
    write_voice_folder(root / "voices", "alice", base_model=BASE)
    evaluation = root / "voices" / "alice" / "eval"
    evaluation.mkdir()
    (evaluation / "evil.svg").write_text(EVIL_SVG)
    (evaluation / "plot.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return root


def make_app(folders, **settings):
    return create_app(
        Settings(
            voices_dir=folders / "voices", prepared_dir=folders / "prepared", base_model=BASE, **settings
        ),
        backend_factory=idle_backend,
    )


@pytest.fixture(scope="module")
def client(folders):
    with local_client(make_app(folders)) as c:
        yield c


@pytest.fixture(scope="module")
def keyed(folders):
    with local_client(make_app(folders, api_keys=KEY)) as c:
        yield c


def transcript(folders) -> dict[str, str]:
    return dict(read_transcript(folders / "prepared" / "alice" / "transcript.csv"))


# ----------------------------------------------------------------------------------------- Host


@pytest.mark.parametrize(
    "host", ["127.0.0.1:8000", "localhost", "LOCALHOST:18000", "[::1]:8000", "127.0.0.1"]
)
def test_the_default_hosts_are_this_machine_on_any_port(client, host):
    assert client.get("/v1/audio/voices", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize(
    "host", ["rebind.attacker.example:18000", "127.0.0.1.attacker.example", "localhost.evil", "[::2]", "a b"]
)
def test_a_rebinding_host_is_refused_before_anything_runs(client, folders, host):
    before = transcript(folders)
    put = client.put(CLIP, json={"text": "rebound"}, headers={"Host": host})
    assert put.status_code == 400 and put.json()["error"]["code"] == "invalid_host"
    assert "VOICELAB_ALLOWED_HOSTS" in put.json()["error"]["message"]
    assert client.get("/v1/audio/voices", headers={"Host": host}).status_code == 400
    assert client.get("/studio/api/datasets", headers={"Host": host}).status_code == 400
    assert transcript(folders) == before


def test_allowed_hosts_is_a_setting_for_a_proxy_or_a_lan_name(folders, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VOICELAB_ALLOWED_HOSTS", "tts.example.com, *.lan ,192.168.1.20")
    settings = load_settings()
    assert settings.allowed_hosts == ["tts.example.com", "*.lan", "192.168.1.20"]
    with local_client(make_app(folders, allowed_hosts=settings.allowed_hosts)) as c:
        for ok in ("tts.example.com", "studio.lan:8000", "192.168.1.20:8000"):
            assert c.get("/health", headers={"Host": ok}).status_code == 200, ok
        for refused in ("127.0.0.1", "example.com", "lan"):
            assert c.get("/health", headers={"Host": refused}).status_code == 400, refused
    with local_client(make_app(folders, allowed_hosts=["*"])) as c:
        assert c.get("/health", headers={"Host": "anything.example"}).status_code == 200


@pytest.mark.parametrize("value", ["tts.example.com:443", "", "exa mple.com", "http://x"])
def test_an_unusable_allowed_host_stops_start_up_naming_it(monkeypatch, tmp_path, value):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VOICELAB_ALLOWED_HOSTS", value)
    with pytest.raises(SettingsError, match="VOICELAB_ALLOWED_HOSTS"):
        load_settings()


# ---------------------------------------------------------------------------------- cross-site


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://attacker.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:9999"},  # another port is another origin
        {"Origin": "https://127.0.0.1:8443"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://127.0.0.1"},
    ],
)
def test_state_changing_requests_from_another_site_are_refused(client, folders, headers):
    before = transcript(folders)
    for response in (
        client.post(RELOAD, headers=headers),
        client.put(CLIP, json={"text": "written cross-site"}, headers=headers),
    ):
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "cross_site_request"
    assert transcript(folders) == before


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl, the OpenAI SDK: no browser headers
        {"Origin": "http://127.0.0.1"},  # the studio page itself (TestClient's Host is 127.0.0.1)
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1:80"},
        {"Sec-Fetch-Site": "none"},  # typed by the user
    ],
)
def test_the_page_itself_and_non_browser_clients_may_write(client, headers):
    assert client.post(RELOAD, headers=headers).status_code == 200


def test_reads_from_another_site_are_not_refused_but_cannot_be_read_there(client):
    # A cross-site GET changes nothing; the browser keeps its answer from the other page (no CORS headers).
    response = client.get("/v1/audio/voices", headers={"Origin": "http://attacker.example"})
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers


def test_a_route_added_later_gets_the_same_rules_without_code_of_its_own(folders):
    app = make_app(folders, api_keys=KEY)
    calls = []

    @app.post("/jobs/upload")
    async def upload(request: Request) -> dict:
        calls.append(await request.body())
        return {"ok": True}

    auth = {"Authorization": f"Bearer {KEY}"}
    with local_client(app) as c:
        assert c.post("/jobs/upload", content=b"x").status_code == 401  # a write needs the key anywhere
        cross = c.post("/jobs/upload", content=b"x", headers={**auth, "Origin": "http://evil.example"})
        assert cross.status_code == 403
        assert (
            c.post("/jobs/upload", content=b"x", headers={**auth, "Host": "evil.example"}).status_code == 400
        )
        assert c.post("/jobs/upload", content=b"fine", headers=auth).status_code == 200
        schema = c.get("/openapi.json").json()["paths"]["/jobs/upload"]["post"]["responses"]
        assert {"400", "401", "403", "413"} <= set(schema)
    assert calls == [b"fine"]


def test_writes_need_the_key_when_keys_are_set(keyed, folders):
    assert keyed.post(RELOAD).status_code == 401
    assert keyed.put(CLIP, json={"text": "no key"}).status_code == 401
    assert keyed.get("/health").status_code == 200 and keyed.get("/").status_code == 200
    auth = {"Authorization": f"Bearer {KEY}"}
    assert keyed.post(RELOAD, headers=auth).status_code == 200


def test_origin_rules_as_functions():
    assert bp.cross_site_reason("GET", "cross-site", "http://evil", "127.0.0.1") is None
    assert bp.cross_site_reason("POST", "", "http://127.0.0.1:8000", "127.0.0.1:8000") is None
    assert bp.cross_site_reason("POST", "", "https://tts.example.com", "tts.example.com") is None
    assert bp.cross_site_reason("DELETE", "", "http://tts.example.com:8080", "tts.example.com") is not None
    assert bp.cross_site_reason("PATCH", "same-site", "", "127.0.0.1") is not None
    assert bp.host_allowed("[::1]:8000", ["[::1]"]) and not bp.host_allowed("[::1]x", ["[::1]"])
    assert (
        bp.check_host_pattern("::1") == "[::1]" and bp.check_host_pattern("*.Example.COM") == "*.example.com"
    )


# ------------------------------------------------------------------------------------- headers


def test_the_page_carries_a_policy_that_allows_only_its_own_files(client):
    page = client.get("/")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"


def test_the_page_has_no_inline_script_or_style_the_policy_would_block():
    html = (STATIC_DIR / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline <script>"
    assert "<style" not in html and not re.search(r"\sstyle=", html), "inline style"
    assert not re.search(r"\son[a-z]+=", html), "inline event handler"
    script = (STATIC_DIR / "studio.js").read_text()
    assert not re.search(r"\beval\(|new Function\(|setAttribute\(\s*[\"']style", script)
    assert ".innerHTML" not in script


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/audio/voices"),
        ("GET", "/health"),
        ("GET", CLIP),
        ("GET", "/nowhere"),
        ("POST", "/health"),
    ],
)
def test_every_other_answer_allows_nothing_to_run(client, method, path):
    response = client.request(method, path)
    assert response.headers["content-security-policy"] == bp.DATA_CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"


def test_refusals_by_the_guard_carry_the_headers_too(client):
    response = client.get("/health", headers={"Host": "evil.example"})
    assert response.status_code == 400 and response.headers["content-security-policy"] == bp.DATA_CSP


def test_swagger_ui_runs_its_own_start_up_script_only(client):
    page = client.get("/docs")
    csp = page.headers["content-security-policy"]
    assert re.search(r"script-src 'self' 'sha256-[A-Za-z0-9+/=]+'", csp) and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp


def test_an_svg_is_a_download_that_runs_nothing_at_its_own_address(client):
    svg = client.get("/studio/api/voices/alice/eval/evil.svg")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.headers["content-disposition"] == "attachment"
    assert "sandbox" in svg.headers["content-security-policy"]
    assert "script-src" not in svg.headers["content-security-policy"]  # default-src 'none' covers it
    png = client.get("/studio/api/voices/alice/eval/plot.png")
    assert png.status_code == 200 and "content-disposition" not in png.headers
    assert png.headers["content-type"] == "image/png"


# ------------------------------------------------------------------------------ 405, schema, metrics


def test_405_lists_every_method_of_the_path(client):
    response = client.post(CLIP)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, PUT"
    assert client.delete("/v1/audio/speech").headers["allow"] == "POST"


def test_the_schema_says_what_the_studio_routes_answer(client):
    paths = client.get("/openapi.json").json()["paths"]
    clip = paths["/studio/api/datasets/{name}/clips/{clip}"]
    assert set(clip["get"]["responses"]["200"]["content"]) == {"audio/wav"}
    assert {"400", "401", "403", "404"} <= set(clip["get"]["responses"])
    assert {"400", "401", "403", "404", "409", "413"} <= set(clip["put"]["responses"])
    assert set(paths["/studio/api/datasets/{name}/report"]["get"]["responses"]["200"]["content"]) == {
        "image/png"
    }
    picture = paths["/studio/api/voices/{voice}/eval/{picture}"]["get"]["responses"]["200"]["content"]
    assert set(picture) == {"image/png", "image/jpeg", "image/svg+xml"}
    assert "409" in paths["/studio/api/datasets/{name}"]["get"]["responses"]


def test_metrics_without_the_key_name_no_voice(folders):
    app = make_app(folders, api_keys=KEY)
    with local_client(app) as c:
        metrics = app.state.metrics
        metrics.requests.labels("alice", "wav", "200").inc(2)
        metrics.requests.labels("bob", "wav", "200").inc(3)
        metrics.time_to_first_audio.labels("alice").observe(0.2)
        metrics.time_to_first_audio.labels("bob").observe(0.4)
        anonymous = c.get("/metrics").text
        assert "alice" not in anonymous and "bob" not in anonymous and "voice=" not in anonymous
        assert 'voicelab_speech_requests_total{format="wav",status="200"} 5.0' in anonymous
        assert "voicelab_time_to_first_audio_seconds_count 2.0" in anonymous
        assert 'voicelab_time_to_first_audio_seconds_bucket{le="0.5"} 2.0' in anonymous
        named = c.get("/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
        assert 'voicelab_speech_requests_total{format="wav",status="200",voice="bob"} 3.0' in named
        assert 'voicelab_time_to_first_audio_seconds_count{voice="alice"} 1.0' in named


def test_the_reload_report_names_no_server_path(folders):
    (folders / "voices" / "outside").symlink_to("/etc", target_is_directory=True)
    try:
        with local_client(make_app(folders)) as c:
            report = c.post(RELOAD)
        assert report.status_code == 200 and "outside" in report.json()["skipped"]
        assert str(folders) not in report.text and "leads outside voices" in report.text
    finally:
        (folders / "voices" / "outside").unlink()

"""The outside test plan of docs/reliability.md, run against the real server over HTTP.

Builds a sandbox (tiny models, a prepared dataset, a voice with an evaluation, a secret file outside both
folders and symlinks to it in every place the server reads), starts the stand-in vLLM and the real API
(uvicorn, one with API keys and one without) and tries, as an outsider would:

* auth: every route x method x key variant x Host x Origin/Sec-Fetch-Site; each answer must be the one the
  rules give (accepted, 400 invalid_host, 403 cross_site_request, 401);
* names: hostile names (traversal, encodings, NUL, over-long, not UTF-8, control characters, symlinks) in
  every name position, sent as raw request lines;
* symlinks: eval summary.md, eval.json and pictures, transcript.csv, excluded.csv, .studio.lock, a dataset
  folder, a clip, a report, a voice folder and an eval folder, each pointing outside;
* random requests: any method, path, headers and body;
* concurrent edits: `voicelab-transcribe` running on a dataset while the studio saves its clips, and two
  reviewers saving one clip with If-Match, round after round;
* CLI: bad inputs to every command (exit status, one `error:` line, no traceback).

It counts what was tried and what went wrong: answers of 500 or more (or a dropped connection), reads of
the secret (its random marker in any answer), server paths in answers, files created outside through a
symlink, answers that break the rules, lost edits, and CLI contract breaks. Exit status 0 only when every
count of what went wrong is 0.

Usage: ``python benchmarks/outside_run.py [--random 2000] [--edit-rounds 30] [--json out.json]``
(``--quick`` for a short run; tests/test_outside_run.py runs it that way under the slow marker).
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

KEY = "outside-run-key"
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TEXTS = {f"clip_{i:03d}": f"Words of clip number {i}." for i in range(8)}
SECONDS = [3.0 + 0.25 * i for i in range(len(TEXTS))]
CROSS_ORIGIN = "http://attacker.example"
EXAMPLE_CHARS = 240
GUARD_CODES = {"invalid_host", "cross_site_request", "missing_api_key", "invalid_api_key"}


@dataclass
class Tally:
    """One part of the plan: how many requests (or commands) were tried and what went wrong."""

    tried: int = 0
    server_errors: int = 0
    """Answers of 500 or more, or a dropped connection."""
    secret_reads: int = 0
    """Answers holding the marker of the secret file outside voices/ and prepared/."""
    path_leaks: int = 0
    """Answers naming the sandbox's absolute path."""
    rule_breaks: int = 0
    """Answers other than the rules give (an accepted request that must be refused, or the reverse)."""
    lost_edits: int = 0
    outside_writes: int = 0
    """Files created or changed outside voices/ and prepared/."""
    overlapped: int = 0
    """Concurrent edits: saves acknowledged while the other writer was at work (what the lost-edit check
    stands on)."""
    examples: list[str] = field(default_factory=list)

    def fail(self, kind: str, what: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.examples) < 5:
            self.examples.append(f"{kind}: {what}"[:EXAMPLE_CHARS])

    @property
    def failures(self) -> int:
        kinds = ("server_errors", "secret_reads", "path_leaks", "rule_breaks", "lost_edits", "outside_writes")
        return sum(getattr(self, k) for k in kinds)


class Sandbox:
    """The folders, the secret, the symlinks pointing at it, and the running servers."""

    def __init__(self, root: Path):
        self.root = root
        self.marker = "OUTSIDE-SECRET-" + secrets.token_hex(8)
        self.outside = root / "outside"
        self.prepared = root / "prepared"
        self.voices = root / "voices"
        self.lock_target = self.outside / "lock-target"

    def build(self, base_model: str) -> None:
        from voicelab.testing.datasets import write_reviewed_dataset
        from voicelab.testing.voices import write_voice_folder

        self.outside.mkdir(parents=True)
        secret = self.outside / "secret.txt"
        secret.write_text(f"filename,text\nclip_000,{self.marker}\n")
        write_reviewed_dataset(self.prepared / "alice", TEXTS, SECONDS)
        write_reviewed_dataset(self.prepared / "edits", TEXTS, SECONDS)
        write_reviewed_dataset(self.outside / "elsewhere", {"clip_000": self.marker}, [3.0])
        write_voice_folder(self.voices, "alice", base_model=base_model)
        write_voice_folder(self.outside, "voice_elsewhere", base_model=base_model)
        (self.outside / "eval_elsewhere").mkdir()
        (self.outside / "eval_elsewhere" / "summary.md").write_text(self.marker)
        self._symlinks(secret)

    def _symlinks(self, secret: Path) -> None:
        from voicelab.testing.datasets import write_reviewed_dataset

        evaluation = self.voices / "alice" / "eval"
        evaluation.mkdir()
        for name in ("summary.md", "eval.json", "leak.png", "leak.svg"):
            (evaluation / name).symlink_to(secret)
        (self.voices / "bob").mkdir()
        (self.voices / "bob" / "eval").symlink_to(self.outside / "eval_elsewhere", target_is_directory=True)
        (self.voices / "carol").symlink_to(self.outside / "voice_elsewhere", target_is_directory=True)
        for name, link, target in (
            ("evil_transcript", "transcript.csv", secret),
            ("evil_excluded", "excluded.csv", secret),
            ("evil_lock", ".studio.lock", self.lock_target),
            ("evil_report", "dataset_report.png", secret),
            ("evil_review", "transcript_review.csv", secret),
            ("evil_signals", "transcript_signals.jsonl", secret),
        ):
            folder = write_reviewed_dataset(self.prepared / name, {"clip_000": "Fine."}, [3.0])
            (folder / link).unlink(missing_ok=True)
            (folder / link).symlink_to(target)
        (self.prepared / "evil_dir").symlink_to(self.outside / "elsewhere", target_is_directory=True)
        (self.prepared / "alice" / "clip_link.wav").symlink_to(self.outside / "elsewhere" / "clip_000.wav")

    def outside_state(self) -> dict[str, bytes]:
        return {str(p): p.read_bytes() for p in sorted(self.outside.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------ requests


def send(
    url: str, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> tuple[int, bytes, dict]:
    """One request with the path exactly as given (no client normalises it); status 0 when the connection
    dropped."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        if body or method in ("POST", "PUT", "PATCH"):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        response = conn.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    except (OSError, http.client.HTTPException) as e:
        return 0, repr(e).encode(), {}
    finally:
        conn.close()


def judge(tally: Tally, sandbox: Sandbox, what: str, status: int, body: bytes) -> None:
    """The checks every answer gets."""
    tally.tried += 1
    if status == 0 or status >= 500:
        tally.fail("server_errors", f"{what} -> {status} {body[:120]!r}")
    if sandbox.marker.encode() in body:
        tally.fail("secret_reads", what)
    if str(sandbox.root).encode() in body:
        tally.fail("path_leaks", f"{what} -> {body[:160]!r}")


def error_code(body: bytes) -> str | None:
    try:
        return json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


# ---------------------------------------------------------------------------------------------- auth

AUTH_VARIANTS = {
    "none": (None, False),
    "good": (f"Bearer {KEY}", True),
    "scheme lower case": (f"bearer {KEY}", True),
    "spaces": (f"Bearer   {KEY}  ", True),
    "wrong": ("Bearer not-the-key", False),
    "empty bearer": ("Bearer", False),
    "basic": (f"Basic {KEY}", False),
    "bare key": (KEY, False),
    "key prefix": (f"Bearer {KEY[:-1]}", False),
}
ORIGIN_VARIANTS = {
    "none": ({}, False),
    "same origin": ({"Origin": "{self}"}, False),
    "cross origin": ({"Origin": CROSS_ORIGIN}, True),
    "null origin": ({"Origin": "null"}, True),
    "other port": ({"Origin": "http://127.0.0.1:1"}, True),
    "fetch cross-site": ({"Sec-Fetch-Site": "cross-site"}, True),
    "fetch same-site": ({"Sec-Fetch-Site": "same-site"}, True),
    "fetch same-origin": ({"Sec-Fetch-Site": "same-origin", "Origin": "{self}"}, False),
    "fetch none": ({"Sec-Fetch-Site": "none"}, False),
}
HOST_VARIANTS = {
    "127.0.0.1": ("127.0.0.1:{port}", True),
    "localhost": ("localhost:{port}", True),
    "[::1]": ("[::1]:{port}", True),
    "rebinding": ("rebind.attacker.example:{port}", False),
    "suffix trick": ("127.0.0.1.attacker.example", False),
    "garbage": ("a b", False),
}
AUTH_ROUTES = [
    ("GET", "/health"),
    ("GET", "/metrics"),
    ("GET", "/"),
    ("GET", "/studio/info"),
    ("GET", "/v1/audio/voices"),
    ("GET", "/v1/models"),
    ("POST", "/v1/voices/reload"),
    ("POST", "/v1/audio/speech"),
    ("GET", "/studio/api/datasets"),
    ("GET", "/studio/api/datasets/alice"),
    ("GET", "/studio/api/datasets/alice/clips/clip_000"),
    ("PUT", "/studio/api/datasets/alice/clips/clip_000"),
    ("GET", "/studio/api/voices/alice/eval"),
    ("DELETE", "/studio/api/datasets/alice/clips/clip_000"),
    ("PATCH", "/v1/audio/speech"),
    ("POST", "/a/route/added/later"),
]
SPEECH_BODY = json.dumps({"voice": "alice", "input": "", "response_format": "pcm"}).encode()
"""Empty input: the route refuses it (400 empty_input) once the guard let it through, so no audio is made."""


def expected_refusal(method: str, path: str, host_ok: bool, cross: bool, key_ok: bool) -> str | None:
    """The guard's answer by its rules (server.guard), or None when the request must reach its route."""
    if not host_ok:
        return "invalid_host"
    state_changing = method not in ("GET", "HEAD", "OPTIONS")
    if state_changing and cross:
        return "cross_site_request"
    needs_key = state_changing or path.startswith(("/v1/", "/studio/api/"))
    if needs_key and not key_ok:
        return "key"
    return None


def auth_matrix(server_url: str, sandbox: Sandbox) -> Tally:
    tally = Tally()
    port = server_url.rsplit(":", 1)[1]
    combos = itertools.product(
        AUTH_ROUTES, AUTH_VARIANTS.items(), HOST_VARIANTS.items(), ORIGIN_VARIANTS.items()
    )
    for (method, path), (_, (auth, key_ok)), (_, (host, host_ok)), (_, (origin, cross)) in combos:
        host = host.format(port=port)
        headers = {"Host": host, **{k: v.replace("{self}", f"http://{host}") for k, v in origin.items()}}
        if auth is not None:
            headers["Authorization"] = auth
        body = b""
        if path == "/v1/audio/speech":
            body, headers["Content-Type"] = SPEECH_BODY, "application/json"
        elif method == "PUT":
            body, headers["Content-Type"] = b'{"excluded": false}', "application/json"
        status, answer, _ = send(server_url, method, path, headers, body)
        what = f"{method} {path} auth={auth!r} host={host!r} origin={origin}"
        judge(tally, sandbox, what, status, answer)
        _check_rule(tally, what, status, answer, expected_refusal(method, path, host_ok, cross, key_ok))
    return tally


def _check_rule(tally: Tally, what: str, status: int, answer: bytes, expected: str | None) -> None:
    code = error_code(answer)
    if expected is None:
        if code in GUARD_CODES:
            tally.fail("rule_breaks", f"{what}: refused ({code}) but must pass")
    elif expected == "key":
        if status != 401 or code not in ("missing_api_key", "invalid_api_key"):
            tally.fail("rule_breaks", f"{what}: {status} {code}, expected 401")
    elif code != expected:
        tally.fail("rule_breaks", f"{what}: {status} {code}, expected {expected}")


# ---------------------------------------------------------------------------------------------- names


def hostile_names() -> list[str]:
    """Raw path segments, already percent-encoded where HTTP needs it."""
    base = [
        "..",
        "%2e%2e",
        "%2E%2E",
        ".%2e",
        "..%2f..%2fetc%2fpasswd",
        "..%5c..%5cetc",
        "%2fetc%2fpasswd",
        "%00",
        "a%00b",
        "clip_000%00.wav",
        "%ff",
        "%c3%28",
        "%ed%a0%80",
        "%fe%ff",
        "%c0%ae%c0%ae",
        "~",
        "~root",
        ".",
        "%20",
        "%0a",
        "%0d%0a",
        "%09",
        "%1b",
        "%7f",
        "%e2%80%ae",
        "%ef%bb%bf",
        "clip_000.wav",
        "CLIP_000",
        "clip_000%20",
        "clip_000.WAV",
        "clip_000.wav.wav",
        "clip_link",
        ".studio.lock",
        "transcript.csv",
        "manifest.csv",
        "summary.md",
        "eval.json",
        "leak.png",
        "leak.svg",
        "evil_dir",
        "evil_transcript",
        "bob",
        "carol",
        "..%2fvoices",
        "alice%2f..%2f..",
        "a" * 255,
        "a" * 256,
        "a" * 1000,
        "%c3%a9" * 128,
        "%c3%a9" * 127,
        "con",
        "nul",
        "aux.png",
        "%25",
        "%2525",
        "%",
        "%zz",
        "a;b",
        "a?b=c",
        "a#b",
        "*",
        "%2a",
        "$(id)",
        "`id`",
        "'",
        "%22",
        "<script>",
        "%3cscript%3e",
        "\u00e9".encode().hex(),
        "%f0%9f%98%80",
        "null",
        "undefined",
    ]
    variants = set(base)
    for name in base[:40]:
        variants.update({name + ".png", name + ".wav", "x" + name, name + "x"})
    return sorted(variants)


NAME_ROUTES = [
    ("GET", "/studio/api/datasets/{n}"),
    ("GET", "/studio/api/datasets/{n}/clips/clip_000"),
    ("GET", "/studio/api/datasets/alice/clips/{n}"),
    ("PUT", "/studio/api/datasets/alice/clips/{n}"),
    ("PUT", "/studio/api/datasets/{n}/clips/clip_000"),
    ("GET", "/studio/api/datasets/{n}/report"),
    ("GET", "/studio/api/voices/{n}/eval"),
    ("GET", "/studio/api/voices/alice/eval/{n}"),
    ("GET", "/studio/static/{n}"),
    ("GET", "/docs-assets/{n}"),
]


def names_run(server_url: str, sandbox: Sandbox) -> Tally:
    tally = Tally()
    auth = {"Host": "127.0.0.1", "Authorization": f"Bearer {KEY}"}
    edit = json.dumps({"text": "Named edit."}).encode()
    for name, (method, template) in itertools.product(hostile_names(), NAME_ROUTES):
        path = template.format(n=name)
        headers = {**auth, "Content-Type": "application/json"} if method == "PUT" else auth
        status, answer, _ = send(server_url, method, path, headers, edit if method == "PUT" else b"")
        judge(tally, sandbox, f"{method} {path}", status, answer)
        if 400 <= status < 500 and path.startswith("/studio/api/") and error_code(answer) is None:
            tally.fail("rule_breaks", f"{method} {path}: {status} not in the error shape")
    for name in hostile_names():  # a voice name in the speech body
        body = json.dumps({"voice": name, "input": "", "response_format": "pcm"}).encode()
        status, answer, _ = send(
            server_url, "POST", "/v1/audio/speech", {**auth, "Content-Type": "application/json"}, body
        )
        judge(tally, sandbox, f"speech voice={name!r}", status, answer)
    return tally


# ------------------------------------------------------------------------------------------- symlinks

SYMLINK_REQUESTS = [
    ("GET", "/studio/api/voices/alice/eval", None),
    ("GET", "/studio/api/voices/alice/eval/leak.png", None),
    ("GET", "/studio/api/voices/alice/eval/leak.svg", None),
    ("GET", "/studio/api/voices/bob/eval", None),
    ("GET", "/studio/api/voices/carol/eval", None),
    ("GET", "/v1/audio/voices", None),
    ("POST", "/v1/voices/reload", None),
    ("GET", "/studio/api/datasets", None),
    ("GET", "/studio/api/datasets/alice", None),
    ("GET", "/studio/api/datasets/alice/clips/clip_link", None),
    ("GET", "/studio/api/datasets/evil_dir", None),
    ("GET", "/studio/api/datasets/evil_dir/clips/clip_000", None),
    ("PUT", "/studio/api/datasets/evil_dir/clips/clip_000", {"text": "through a linked folder"}),
    ("GET", "/studio/api/datasets/evil_report/report", None),
    ("GET", "/studio/api/datasets/evil_review", None),
    ("GET", "/studio/api/datasets/evil_signals", None),
]
for _name in ("evil_transcript", "evil_excluded", "evil_lock"):
    SYMLINK_REQUESTS += [
        ("GET", f"/studio/api/datasets/{_name}", None),
        ("PUT", f"/studio/api/datasets/{_name}/clips/clip_000", {"text": "saved through a link"}),
        ("PUT", f"/studio/api/datasets/{_name}/clips/clip_000", {"excluded": True, "reason": "linked"}),
    ]


def symlinks_run(server_url: str, sandbox: Sandbox) -> Tally:
    tally = Tally()
    before = sandbox.outside_state()
    headers = {"Host": "127.0.0.1", "Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    for method, path, body in SYMLINK_REQUESTS:
        data = json.dumps(body).encode() if body is not None else b""
        status, answer, _ = send(server_url, method, path, headers, data)
        judge(tally, sandbox, f"{method} {path}", status, answer)
    if sandbox.lock_target.exists():
        tally.fail("outside_writes", f"a save created {sandbox.lock_target.name} through .studio.lock")
    if sandbox.outside_state() != before:
        tally.fail("outside_writes", "a file outside voices/ and prepared/ changed")
    return tally


# --------------------------------------------------------------------------------------- random requests

RANDOM_PATHS = (
    [r[1] for r in AUTH_ROUTES]
    + [t.replace("{n}", "alice") for _, t in NAME_ROUTES]
    + [
        "/docs",
        "/openapi.json",
        "/nowhere",
        "/v1",
        "/v1/",
        "//v1/models",
        "/v1/audio/speech/",
        "/studio/api/",
    ]
)
RANDOM_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND", "BREW"]
CONTENT_TYPES = [
    "application/json",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "",
]


def random_body(rng: random.Random) -> bytes:
    kind = rng.randrange(5)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 200))
    if kind == 1:
        value = rng.choice([None, True, 1, -1, 1e308, "x", [], {}, {"text": None}, {"excluded": "on"}])
        return json.dumps({"text": value, "excluded": rng.choice([True, "on", 1, None])}).encode()
    if kind == 2:
        return json.dumps({"voice": "alice", "input": rng.choice(["", " ", "\ud800", "x" * 5000])}).encode()
    if kind == 3:
        return b"[" * rng.randrange(1, 5000)
    return b""


def random_run(server_url: str, sandbox: Sandbox, count: int, seed: int) -> Tally:
    tally = Tally()
    rng = random.Random(seed)
    for _ in range(count):
        method, path = rng.choice(RANDOM_METHODS), rng.choice(RANDOM_PATHS)
        if rng.random() < 0.3:
            path += rng.choice(["?", "?a=1", "/..", "%00", "/x", ";x", "?voice=" + "%ff" * 3])
        headers = {"Host": "127.0.0.1", "Authorization": f"Bearer {KEY}"}
        if content_type := rng.choice(CONTENT_TYPES):
            headers["Content-Type"] = content_type
        if rng.random() < 0.2:
            headers[rng.choice(["If-Match", "Origin", "Sec-Fetch-Site", "Range", "Accept"])] = rng.choice(
                ["*", '"x"', "null", CROSS_ORIGIN, "bytes=0-1", "none", "\u00e9"]
            )
        status, answer, _ = send(
            server_url, method, path, headers, random_body(rng) if method != "GET" else b""
        )
        judge(tally, sandbox, f"{method} {path}", status, answer)
    return tally


# ------------------------------------------------------------------------------------ concurrent edits


def reviewers_run(server_url: str, sandbox: Sandbox, rounds: int) -> Tally:
    """Two reviewers save one clip at the same time, both from the version they read: one wins (200), the
    other is told (409); the file holds the winner's text."""
    tally = Tally()
    headers = {"Host": "127.0.0.1", "Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    path = "/studio/api/datasets/edits/clips/clip_001"
    for n in range(rounds):
        _, listing, _ = send(server_url, "GET", "/studio/api/datasets/edits", headers)
        etag = next(c["etag"] for c in json.loads(listing)["clips"] if c["filename"] == "clip_001")
        results: dict[str, int] = {}

        def save(who: str, etag: str = etag, n: int = n, results: dict = results) -> None:
            body = json.dumps({"text": f"Round {n} by {who}."}).encode()
            status, answer, _ = send(server_url, "PUT", path, {**headers, "If-Match": etag}, body)
            judge(tally, sandbox, f"PUT {path} as {who}", status, answer)
            results[who] = status

        threads = [threading.Thread(target=save, args=(who,)) for who in ("one", "two")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [who for who, status in results.items() if status == 200]
        tally.overlapped += 1
        if sorted(results.values()) != [200, 409]:
            tally.fail("lost_edits", f"round {n}: statuses {results} (a save went through unseen)")
            continue
        rows = transcript_rows(sandbox.prepared / "edits")
        if rows.get("clip_001") != f"Round {n} by {winners[0]}.":
            tally.fail("lost_edits", f"round {n}: the file holds {rows.get('clip_001')!r}")
    return tally


def transcript_rows(folder: Path) -> dict[str, str]:
    from voicelab.dataset import read_transcript

    return dict(read_transcript(folder / "transcript.csv"))


TRANSCRIBE_CLIPS = 24
"""Enough clips that the transcriber is still at work while the studio saves (checked: ``overlapped``)."""


def transcribe_run(server_url: str, sandbox: Sandbox, whisper: Path, rounds: int) -> Tally:
    """`voicelab-transcribe` over a dataset while the studio saves its clips: every edit acknowledged while
    it ran must be in transcript.csv when it is done (it never overwrites a person's row). ``rounds`` runs,
    each saving every clip once while transcribe works, then waiting for it to end."""
    tally = Tally()
    for n in range(max(1, rounds // 5)):
        _one_transcribe_round(server_url, sandbox, whisper, n, tally)
    return tally


def _one_transcribe_round(server_url: str, sandbox: Sandbox, whisper: Path, n: int, tally: Tally) -> None:
    import time

    from voicelab.testing.datasets import write_reviewed_dataset

    texts = {f"clip_{i:03d}": f"Words of clip number {i}." for i in range(TRANSCRIBE_CLIPS)}
    folder = write_reviewed_dataset(sandbox.prepared / f"transcribing_{n}", texts, [3.0] * TRANSCRIBE_CLIPS)
    for name in ("transcript.csv", "transcript_signals.jsonl", "transcript_review.csv"):
        (folder / name).unlink()
    command = [
        str(BIN / "voicelab-transcribe"),
        str(folder),
        "--model",
        str(whisper),
        "--no-quality",
        "--no-progress",
        "--beam-size",
        "1",
        "--temperature-increment-on-fallback",
        "0",
        "--threads",
        "1",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while not (folder / "transcript.csv").exists() and process.poll() is None:
        time.sleep(0.05)  # transcribe writes the file (header) before its first clip
    headers = {"Host": "127.0.0.1", "Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    acknowledged: dict[str, str] = {}
    for clip in reversed(list(texts)):  # from the end: clips transcribe reaches after the save
        text = f"Person's edit of {clip} in round {n}."
        path = f"/studio/api/datasets/{folder.name}/clips/{clip}"
        status, answer, _ = send(server_url, "PUT", path, headers, json.dumps({"text": text}).encode())
        judge(tally, sandbox, f"PUT {clip} while transcribing", status, answer)
        if status == 200 and process.poll() is None:
            acknowledged[clip] = text
    _, err = process.communicate()
    tally.overlapped += len(acknowledged)
    if process.returncode != 0:
        tally.fail("server_errors", f"transcribe exited {process.returncode}: {err[-300:]}")
    rows = transcript_rows(folder)
    for clip, text in acknowledged.items():
        if rows.get(clip) != text:
            tally.fail("lost_edits", f"{clip}: acknowledged {text!r}, file holds {rows.get(clip)!r}")


# ---------------------------------------------------------------------------------------------- CLI


def cli_cases(sandbox: Sandbox, whisper: Path) -> list[tuple[list[str], int]]:
    """(argv, expected exit status) for bad inputs to every command."""
    afile = sandbox.root / "afile.txt"
    afile.write_text("not a model")
    data = str(sandbox.prepared / "alice")
    bad_name = os.fsdecode(os.fsencode(sandbox.root) + b"/raw_bad/bad\xff.wav")
    Path(bad_name).parent.mkdir(exist_ok=True)
    Path(bad_name).write_bytes((sandbox.prepared / "alice" / "clip_000.wav").read_bytes())
    prepare, transcribe = "voicelab-prepare-audio", "voicelab-transcribe"
    train, evaluate = "voicelab-train-lora", "voicelab-evaluate"
    export, vllm = "voicelab-export-dataset", "voicelab-serve-vllm"
    out = str(sandbox.root / "cli_out")
    return [
        ([prepare, "/nonexistent", out], 2),
        ([prepare, data, "/sys"], 2),
        ([prepare, data, str(afile)], 2),
        ([prepare, data, data + "/inside"], 2),
        ([prepare, data, out, "--min-duration", "nan"], 2),
        ([prepare, data, out, "--sample-rate", "0"], 2),
        ([prepare, str(Path(bad_name).parent), out + "_bad"], 1),
        ([transcribe, "/nonexistent"], 2),
        ([transcribe, data, "--model", "no-such-model"], 2),
        ([transcribe, data, "--model", str(whisper), "--output", "/sys/t.csv"], 2),
        ([transcribe, data, "--model", str(whisper), "--output", data], 2),
        ([transcribe, data, "--model", str(sandbox.root / "missing.pt")], 2),
        ([transcribe, data, "--speaker-threshold", "2"], 2),
        ([train, "../evil", data], 2),
        ([train, "alice", "/nonexistent"], 2),
        ([train, "new", data, "--voices-dir", str(afile)], 2),
        ([train, "new", data, "--voices-dir", "/sys"], 2),
        ([train, "new", data, "--voices-dir", out, "--snac-model", str(afile)], 2),
        ([train, "new", data, "--voices-dir", out, "--base-model", str(afile)], 2),
        ([train, "new", data, "--epochs", "-1"], 2),
        ([evaluate], 2),
        ([evaluate, "ghost", "--voices-dir", str(sandbox.voices)], 2),
        (
            [
                evaluate,
                "alice",
                "--compare",
                "ghost",
                "--voices-dir",
                str(sandbox.voices),
                "--dataset-dir",
                data,
            ],
            2,
        ),
        ([evaluate, "alice", "--voices-dir", str(sandbox.voices), "--snac-model", str(afile)], 2),
        ([evaluate, "--all", "--voices-dir", "/nonexistent"], 2),
        ([export, "/nonexistent", out], 2),
        ([export, data, "/sys/export"], 2),
        ([export, data, data], 2),
        ([export, data, str(afile)], 2),
        ([export, data, out + "_export", "--text-column", "file_name"], 2),
        ([vllm, "--dry-run", "--port", "70000"], 2),
        ([vllm, "--dry-run", "--port", "0"], 2),
        ([vllm, "--dry-run", "--gpu-memory-utilization", "2"], 2),
        ([vllm, "--dry-run", "--max-lora-rank", "3"], 2),
        ([vllm, "--vllm", "/nonexistent/vllm"], 2),
    ]


def cli_run(sandbox: Sandbox, whisper: Path) -> Tally:
    tally = Tally()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for argv, expected in cli_cases(sandbox, whisper):
        proc = subprocess.run(
            [str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True, env=env, cwd=sandbox.root
        )
        tally.tried += 1
        what = " ".join(argv)
        if "Traceback" in proc.stderr:
            tally.fail("server_errors", f"{what}: a traceback")
        elif proc.returncode != expected:
            tally.fail(
                "rule_breaks", f"{what}: exit {proc.returncode}, expected {expected}: {proc.stderr[-200:]}"
            )
        elif expected == 2 and "error" not in proc.stderr:
            tally.fail("rule_breaks", f"{what}: exit 2 without an error line")
    return tally


# ---------------------------------------------------------------------------------------------- run


def start_servers(sandbox: Sandbox, models: Path, stack):
    """The stand-in vLLM and the API twice: with keys (most of the plan) and without (cross-site only)."""
    from voicelab.server.app import create_app
    from voicelab.server.settings import Settings
    from voicelab.testing.fake_vllm import FakeVLLMServer
    from voicelab.testing.server import ServerThread

    vllm = stack.enter_context(FakeVLLMServer(base_model=str(models / "orpheus")))
    common = dict(
        voices_dir=sandbox.voices,
        prepared_dir=sandbox.prepared,
        vllm_url=vllm.url,
        base_model=str(models / "orpheus"),
        snac_model=str(models / "snac"),
        log_level="CRITICAL",
    )
    keyed = stack.enter_context(ServerThread(create_app(Settings(**common, api_keys=KEY))))
    return keyed


def run(args) -> dict[str, Tally]:
    import contextlib
    import logging

    from voicelab.testing.models import build_tiny_orpheus, build_tiny_snac, build_tiny_whisper

    logging.getLogger("uvicorn.error").setLevel(logging.ERROR)  # hostile requests are the point here

    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp).resolve()
        models = root / "models"
        build_tiny_orpheus(models / "orpheus")
        build_tiny_snac(models / "snac")
        whisper = build_tiny_whisper(models / "whisper.pt")
        sandbox = Sandbox(root / "sandbox")
        sandbox.build(str(models / "orpheus"))
        url = start_servers(sandbox, models, stack).url
        parts = {
            "symlinks": lambda: symlinks_run(url, sandbox),  # first: later saves may replace a link
            "auth variants": lambda: auth_matrix(url, sandbox),
            "hostile names": lambda: names_run(url, sandbox),
            "random requests": lambda: random_run(url, sandbox, args.random, args.seed),
            "two reviewers, If-Match": lambda: reviewers_run(url, sandbox, args.edit_rounds),
            "transcribe + studio saves": lambda: transcribe_run(url, sandbox, whisper, args.edit_rounds),
            "CLI bad inputs": lambda: cli_run(sandbox, whisper),
        }
        results = {}
        for name, part in parts.items():
            if args.only and name not in args.only:
                continue
            print(f"running: {name}", file=sys.stderr, flush=True)
            results[name] = part()
        return results


def report(results: dict[str, Tally]) -> str:
    kinds = [
        "tried",
        "server_errors",
        "secret_reads",
        "path_leaks",
        "rule_breaks",
        "lost_edits",
        "outside_writes",
        "overlapped",
    ]
    lines = ["| part | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    totals = Counter()
    for name, tally in results.items():
        values = asdict(tally)
        totals.update({k: values[k] for k in kinds})
        lines.append(f"| {name} | " + " | ".join(str(values[k]) for k in kinds) + " |")
    lines.append("| **all** | " + " | ".join(str(totals[k]) for k in kinds) + " |")
    for name, tally in results.items():
        lines += [f"  {name}: {example}" for example in tally.examples]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--random", type=int, default=2000, help="random requests to send")
    parser.add_argument("--edit-rounds", type=int, default=30, help="rounds of each concurrent-edit part")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", action="append", help="run only this part (repeatable)")
    parser.add_argument("--quick", action="store_true", help="--random 200 --edit-rounds 5")
    parser.add_argument("--json", type=Path, help="also write the counts here")
    args = parser.parse_args(argv)
    if args.quick:
        args.random, args.edit_rounds = 200, 5
    results = run(args)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps({k: asdict(v) for k, v in results.items()}, indent=2))
    return 1 if any(t.failures for t in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Prometheus metrics for ``GET /metrics``, one registry per app (tests build many apps in one process).

The ``voice`` label only ever takes the name of a served voice (or ``"unknown"``), so a client cannot
grow the label set by sending random voice names.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

UNKNOWN_VOICE_LABEL = "unknown"
TTFA_BUCKETS_S = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
"""Time to first audio: interactive use needs well under a second."""

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "voicelab_speech_requests",
            "Speech requests by voice, format and HTTP status",
            ["voice", "format", "status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "voicelab_speech_errors",
            "Failed speech requests by voice and error code (mid-stream failures included)",
            ["voice", "code"],
            registry=self.registry,
        )
        self.time_to_first_audio = Histogram(
            "voicelab_time_to_first_audio_seconds",
            "Seconds from request to the first decoded audio chunk",
            ["voice"],
            buckets=TTFA_BUCKETS_S,
            registry=self.registry,
        )
        self.audio_seconds = Counter(
            "voicelab_audio_seconds",
            "Seconds of audio produced",
            ["voice"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "voicelab_speech_requests_in_flight",
            "Speech requests being generated now",
            registry=self.registry,
        )
        self.voices = Gauge("voicelab_voices_served", "Voices in the registry", registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)

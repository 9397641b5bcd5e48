"""Prometheus metrics for ``GET /metrics``, one registry per app (tests build many apps in one process).

The ``voice`` label only ever takes the name of a voice that was served when its request began (or
``"unknown"`` for a request naming none), so a client cannot grow the label set by sending random voice
names, and a voice removed mid-stream keeps its own counts. ``/metrics`` is open without a key (for
scrapers); when keys are set, an answer without a valid key sums over voices and names none.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric

UNKNOWN_VOICE_LABEL = "unknown"
VOICE_LABEL = "voice"
CREATED_SUFFIX = "_created"
"""A series' creation time: merged series keep the earliest, not a sum."""
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

    def render(self, *, with_voices: bool = True) -> bytes:
        """The exposition text; without ``with_voices``, every series summed over the ``voice`` label."""
        return generate_latest(self.registry if with_voices else WithoutVoices(self.registry))


class WithoutVoices:
    """A collector showing ``registry``'s metrics with the ``voice`` label summed away."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self):
        for family in self.registry.collect():
            if not any(VOICE_LABEL in sample.labels for sample in family.samples):
                yield family
                continue
            merged: dict[tuple, float] = {}
            for sample in family.samples:
                labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != VOICE_LABEL))
                key = (sample.name, labels)
                if key not in merged:
                    merged[key] = sample.value
                elif sample.name.endswith(CREATED_SUFFIX):
                    merged[key] = min(merged[key], sample.value)
                else:
                    merged[key] += sample.value
            summed = Metric(family.name, family.documentation, family.type, family.unit)
            for (name, labels), value in merged.items():
                summed.add_sample(name, dict(labels), value)
            yield summed

"""The server's one settings object, read from ``VOICELAB_*`` environment variables and a ``.env`` file.

Nothing else in the server reads the environment: ``create_app(settings)`` gets this object, and tests
build their own. Unsafe or contradictory values fail here, at start-up, with a message naming the variable.
``load_settings`` also reads ``.env`` in the working directory (one file per deployment); a variable set in the
real environment wins over the same line in ``.env``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from voicelab.engine import base
from voicelab.voice import ADAPTER_CONFIG_FILE, DEFAULT_BASE_MODEL, DEFAULT_SNAC_MODEL, VLLM_LORA_RANKS

ENV_PREFIX = "VOICELAB_"
DEFAULT_ENV_FILE = Path(".env")
"""Read by ``load_settings`` from the working directory (the repository root under make) when it exists."""
OPENAI_MAX_INPUT_CHARS = 4096
"""OpenAI's limit on ``input``; clients written for it never send more."""
DEFAULT_MAX_LORA_RANK = 64
"""Largest rank the guide recommends; higher ranks cost vLLM memory for every adapter slot."""
JSON_BYTES_PER_CHAR = 12
"""Most bytes one character of text can take in a JSON body: a character outside the BMP written as two
``\\uXXXX`` escapes."""
TEXT_FIELDS_PER_REQUEST = 2
"""``input`` and ``instructions``, each up to ``max_input_chars``."""
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")
"""The default ``allowed_hosts``: this machine only, whatever the port (a page on another site that makes
its own name resolve to 127.0.0.1, DNS rebinding, still sends its own name as Host and is refused)."""
REQUEST_OVERHEAD_BYTES = 16 * 1024
"""Room for the other fields of a speech request (voice, format, sampling) and generous whitespace."""
DEFAULT_MAX_UPLOAD_BYTES = 2 * 1024**3
"""One recording uploaded to the studio: 2 GiB holds three hours of 48 kHz stereo 16-bit WAV (691 MB an
hour), and far more of any compressed format."""


def default_max_request_bytes(max_input_chars: int) -> int:
    """The largest body a valid speech request with ``max_input_chars`` of text can have."""
    return JSON_BYTES_PER_CHAR * TEXT_FIELDS_PER_REQUEST * max_input_chars + REQUEST_OVERHEAD_BYTES


EngineKind = Literal["auto", "vllm", "local"]
LogLevel = Literal["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"]


class Settings(BaseSettings):
    """Every knob of the TTS server. Environment: ``VOICELAB_<FIELD>`` (e.g. ``VOICELAB_VLLM_URL``)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    voices_dir: Path = Field(
        Path("voices"), description=f"Folder scanned for voices/{{name}}/{ADAPTER_CONFIG_FILE}"
    )
    engine: EngineKind = Field(
        "auto", description="'vllm', 'local' (embedded transformers), or 'auto': vllm when vllm_url is set"
    )
    vllm_url: str | None = Field(None, description="Base URL of the vLLM server, e.g. http://127.0.0.1:8001")
    vllm_api_key: SecretStr | None = Field(
        None, description="Sent to vLLM when it was started with --api-key"
    )
    vllm_lora_resolver: bool = Field(
        False,
        description="vLLM loads voices/NAME itself (`make vllm ARGS=--lora-resolver`): the API sends no "
        "adapter load calls and serves a voice folder added later on its first request",
    )
    vllm_timeout_s: float = Field(30.0, gt=0, description="Connect/read timeout for vLLM, seconds")
    base_model: str = Field(
        DEFAULT_BASE_MODEL, description="Hub id or local folder of the Orpheus base model"
    )
    device: str = Field("cpu", description="Device of the local engine (cpu, cuda, cuda:1)")
    snac_model: str = Field(DEFAULT_SNAC_MODEL, description="Hub id or local folder of the SNAC decoder")
    snac_device: str = Field("cpu", description="Device SNAC decodes on (cpu, cuda)")
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Comma-separated bearer keys; empty: no authentication"
    )
    max_input_chars: int = Field(OPENAI_MAX_INPUT_CHARS, ge=1, description="Longest accepted input text")
    max_request_bytes: int | None = Field(
        None,
        ge=1,
        description="Largest request body; larger ones get 413 before they are read. Default: derived "
        "from max_input_chars (the largest valid speech request)",
    )
    docs: bool = Field(
        True,
        description="Serve /docs (Swagger UI, from the package: works offline) and /openapi.json without a "
        "key; false turns both off",
    )
    max_concurrent_requests: int = Field(8, ge=1, description="Speech requests in flight before 429")
    max_lora_rank: int = Field(
        DEFAULT_MAX_LORA_RANK, ge=1, description="Voices with a larger LoRA rank are skipped"
    )
    model_id: str = Field("orpheus", min_length=1, description="Model id reported by GET /v1/models")
    temperature: float = Field(base.DEFAULT_TEMPERATURE, gt=0, le=2)
    top_p: float = Field(base.DEFAULT_TOP_P, gt=0, le=1)
    repetition_penalty: float = Field(base.DEFAULT_REPETITION_PENALTY, ge=1, le=2)
    log_level: LogLevel = "INFO"
    prepared_dir: Path = Field(
        Path("prepared"), description="Folder of prepared datasets (prepared/NAME/) the studio page reviews"
    )
    studio: bool = Field(
        True, description="Serve the studio's dataset endpoints (false: read-only voices page)"
    )
    studio_jobs: bool | None = Field(
        None,
        description="The studio's New voice jobs (uploads, training runs): unset or auto = on only while the "
        "server listens on loopback addresses alone; true = on wherever it listens; false = off",
    )
    raw_dir: Path = Field(
        Path("raw_audio"), description="Where studio jobs gather recordings (raw_audio/NAME/)"
    )
    jobs_dir: Path = Field(
        Path("jobs"), description="Studio jobs: each one's settings, uploads, log and progress (jobs/ID/)"
    )
    max_upload_bytes: int = Field(
        DEFAULT_MAX_UPLOAD_BYTES,
        ge=1,
        description="Largest recording one studio upload may send (413 beyond)",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(LOCAL_HOSTS),
        description="Comma-separated host names the server answers to (the Host header, any port); others "
        "get 400. Add the name clients use: the proxy's public name behind a reverse proxy, the machine's "
        "name or address with `make serve HOST=0.0.0.0`. '*.example.com' matches its sub-domains; '*' "
        "turns the check off (only behind a proxy that checks Host itself)",
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value):
        # One env var holds several keys so they can be rotated: "old-key,new-key".
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @field_validator("studio_jobs", mode="before")
    @classmethod
    def _auto_jobs(cls, value):
        # "auto" (or an empty VOICELAB_STUDIO_JOBS=) is the default: decided by where the server listens
        return None if isinstance(value, str) and value.strip().lower() in ("", "auto") else value

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value):
        if isinstance(value, str):
            return [host.strip() for host in value.split(",") if host.strip()]
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _check_hosts(cls, value: list[str]) -> list[str]:
        from voicelab.server.browser_policy import check_host_pattern

        if not value:
            raise ValueError(f"{ENV_PREFIX}ALLOWED_HOSTS is empty: nothing could reach the server")
        return [check_host_pattern(host) for host in value]

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value):
        return value.upper() if isinstance(value, str) else value

    @field_validator("vllm_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{ENV_PREFIX}VLLM_URL must start with http:// or https://, got {value!r}")
        return value

    @field_validator("max_lora_rank")
    @classmethod
    def _check_rank(cls, value: int) -> int:
        if value > VLLM_LORA_RANKS[-1]:
            raise ValueError(
                f"{ENV_PREFIX}MAX_LORA_RANK {value} is above vLLM's largest ({VLLM_LORA_RANKS[-1]})"
            )
        return value

    @model_validator(mode="after")
    def _check_engine(self) -> Settings:
        if self.engine == "vllm" and self.vllm_url is None:
            raise ValueError(
                f"{ENV_PREFIX}ENGINE=vllm needs {ENV_PREFIX}VLLM_URL (where `make vllm` listens, "
                "e.g. http://127.0.0.1:8001)"
            )
        return self

    @property
    def engine_kind(self) -> Literal["vllm", "local"]:
        """The engine actually used: 'auto' picks vLLM when a URL is configured, else the local engine."""
        if self.engine == "auto":
            return "vllm" if self.vllm_url else "local"
        return self.engine

    @property
    def request_body_limit(self) -> int:
        """``max_request_bytes``, or the default derived from ``max_input_chars``."""
        if self.max_request_bytes is not None:
            return self.max_request_bytes
        return default_max_request_bytes(self.max_input_chars)

    def default_sampling(self) -> base.SamplingParams:
        return base.SamplingParams(
            temperature=self.temperature, top_p=self.top_p, repetition_penalty=self.repetition_penalty
        )


class SettingsError(ValueError):
    """``VOICELAB_*`` values that cannot be used; the message names each variable and what is wrong."""


def load_settings(env_file: Path | None = DEFAULT_ENV_FILE) -> Settings:
    """``Settings`` from the environment and ``env_file`` (environment first), errors named per variable.

    ``VOICELAB_*`` lines of ``env_file`` that name no setting (a typo) are an error, not silently ignored;
    its other lines are not read (set ``HF_HUB_OFFLINE`` and the like in the real environment).
    """
    if env_file is not None and env_file.is_file():
        _check_env_file(env_file)
    try:
        return Settings(_env_file=env_file)
    except ValidationError as e:
        problems = []
        for error in e.errors():
            field = "_".join(str(part) for part in error["loc"]).upper()
            message = error["msg"].removeprefix("Value error, ")  # our validators already name the variable
            given = error.get("input")
            if field and isinstance(given, str | int | float) and repr(given) not in message:
                message = f"{message} (got {given!r})"
            problems.append(f"{ENV_PREFIX}{field}: {message}" if field else message)
        raise SettingsError("; ".join(problems)) from e


def _check_env_file(env_file: Path) -> None:
    from dotenv import dotenv_values  # pydantic-settings' own .env reader

    known = {f"{ENV_PREFIX}{name}".upper() for name in Settings.model_fields}
    unknown = sorted(
        key
        for key in dotenv_values(env_file)
        if key.upper().startswith(ENV_PREFIX) and key.upper() not in known
    )
    if unknown:
        raise SettingsError(
            f"{env_file}: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} no setting "
            "(the VOICELAB_* table in the README lists them)"
        )

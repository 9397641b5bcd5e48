# voicelab: raw recordings -> Orpheus LoRA voice -> served over HTTP.
# Every step target runs a script in scripts/ and passes ARGS through, e.g.
#   make prepare-audio ARGS="raw_audio/$$CHARACTER/ prepared/$$CHARACTER/"

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install test test-all lint format voice prepare-audio transcribe train-lora evaluate export-dataset vllm install-vllm dev serve

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-15s %s\n", $$1, $$2}'

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

install: $(PY) ## Create .venv and install voicelab (editable) with the dev tools
	$(PY) -m pip install -e ".[dev]"

# One pytest-xdist worker per core, a file per worker at a time (a module's fixtures are built once), and
# one BLAS/OpenMP thread per worker: two workers each spinning two threads on two cores only wait.
TEST_PARALLEL ?= -n auto --dist loadfile
test: ## Run the offline test suite (CPU, tiny models; no downloads), a worker per core
	OMP_NUM_THREADS=1 $(PY) -m pytest $(TEST_PARALLEL)

test-all: ## Run every test, the slow ones included (gpu tests skip without CUDA)
	OMP_NUM_THREADS=1 $(PY) -m pytest $(TEST_PARALLEL) -m ""

lint: ## ruff check and format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: ## Apply ruff fixes and formatting
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

NAME ?=
SOURCE ?=

voice: ## Recordings to a voice in one go: NAME=alice SOURCE="folder/ file.wav https://..." [ARGS="--no-review ..."]
	@test -n "$(NAME)" -a -n "$(SOURCE)" || { echo 'usage: make voice NAME=alice SOURCE="recordings/alice/ https://..." [ARGS="--device cuda ..."]' >&2; exit 2; }
	$(PY) scripts/voice.py $(NAME) $(SOURCE) $(ARGS)

prepare-audio: ## Split raw recordings into 3-13 s clips: ARGS="raw_audio/NAME/ prepared/NAME/"
	$(PY) scripts/prepare_audio.py $(ARGS)

transcribe: ## Whisper transcripts: ARGS="prepared/NAME/ --model large"
	$(PY) scripts/transcribe.py $(ARGS)

train-lora: ## Train a LoRA voice: ARGS="NAME prepared/NAME/ --device cuda" (epochs and stop chosen from the data)
	$(PY) scripts/train_lora.py $(ARGS)

evaluate: ## Measure a trained voice (similarity, WER, DNSMOS, runaways, overfitting): ARGS="NAME" or ARGS="--all"
	$(PY) scripts/evaluate_voice.py $(ARGS)

export-dataset: ## The clips training uses as a Hugging Face audiofolder: ARGS="prepared/NAME/ exports/NAME/"
	$(PY) scripts/export_dataset.py $(ARGS)

VLLM_VENV ?= .venv-vllm
VLLM_VERSION ?= 0.33.0

install-vllm: ## Create .venv-vllm with vLLM (GPU machines only; kept apart from .venv)
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install "vllm==$(VLLM_VERSION)"

vllm: ## vLLM on 127.0.0.1:8001 with every voice as a LoRA adapter (after install-vllm; ARGS="--dry-run" prints it)
	$(PY) scripts/serve_vllm.py --vllm $(VLLM_VENV)/bin/vllm $(ARGS)

HOST ?= 127.0.0.1
PORT ?= 8000

WORKERS ?= 1

# check_server says in one line what would stop the start-up (settings, model folders), before uvicorn runs.
dev: ## Development: the TTS API and the studio page on HOST:PORT (http://127.0.0.1:8000/), reloading on src/ edits; settings: VOICELAB_* or .env
	@$(PY) -m voicelab.cli.check_server
	$(PY) -m uvicorn voicelab.server.app:create_app --factory --reload --reload-dir src --host $(HOST) --port $(PORT) $(ARGS)

# Each worker is a process with its own engine client, SNAC decoder, voice registry, limits and metrics.
serve: ## Production: the TTS API on HOST:PORT, WORKERS processes (1), no reload, access log; settings: VOICELAB_* or .env
	@$(PY) -m voicelab.cli.check_server
	$(PY) -m uvicorn voicelab.server.app:create_app --factory --host $(HOST) --port $(PORT) --workers $(WORKERS) --access-log $(ARGS)

# The voicelab API (CPU image: SNAC decodes on CPU; see docs/deploy.md for the capacity that gives).
# Written without a Docker engine at hand: not built here.
FROM python:3.12-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
# CPU-only torch keeps the image small; the API never runs the language model itself when vLLM serves.
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu . \
    && useradd --create-home voicelab
USER voicelab
ENV HF_HOME=/hf-cache
EXPOSE 8000
CMD ["uvicorn", "voicelab.server.app:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000"]

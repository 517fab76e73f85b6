# One image for the three services: `docker build -t order-approvals .`, then run
# `python -m orders` (or approvals, notifier) under a Dapr sidecar (see deploy/).
FROM python:3.11-slim
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
COPY services ./services
COPY tools ./tools
COPY libs ./libs
RUN uv sync --frozen --no-dev && useradd --uid 10001 app
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1
USER app
CMD ["python", "-m", "orders"]

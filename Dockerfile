# One image for the three services: `docker build -t order-approvals .`, then run
# `python -m orders` (or approvals, notifier) under a Dapr sidecar (see deploy/).
# The base and uv are pinned to exact versions (pin their digests too, `name:tag@sha256:...`,
# where your registry allows); the Python packages come from uv.lock (--frozen), without the
# dev group. The image runs as uid 10001, numeric so that Kubernetes can check runAsNonRoot,
# and needs no writable path but /tmp: bytecode is compiled at build time, so it runs on a
# read-only root filesystem (deploy/base/apps.yaml mounts an emptyDir on /tmp).
FROM python:3.11.14-slim-bookworm
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
COPY services ./services
COPY tools ./tools
COPY libs ./libs
RUN uv sync --frozen --no-dev --no-cache --compile-bytecode \
    && useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin app
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
CMD ["python", "-m", "orders"]

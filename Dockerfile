# The image the Kubernetes work pool runs (infra/prefect/kubernetes-work-pool.json, default
# image ghcr.io/acme/data-pipelines). It holds exactly the locked production dependencies, the
# same set a process worker installs from requirements.txt: uv.lock without the dev and local
# groups (a test compares the two commands). Code is not baked in: like on a process worker,
# each flow run's pull steps clone the deployed commit and `uv pip install` its requirements
# into this image's environment (a no-op while the lock is unchanged).
#
#   docker build -t ghcr.io/acme/data-pipelines:$(git rev-parse --short HEAD) .
FROM python:3.11-slim-bookworm

ARG UV_VERSION=0.13.9
# git: the pull step clones the repository.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/* \
    && pip install --no-cache-dir "uv==${UV_VERSION}"

ENV UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/opt/data-pipelines/.venv \
    VIRTUAL_ENV=/opt/data-pipelines/.venv \
    PATH=/opt/data-pipelines/.venv/bin:$PATH

WORKDIR /opt/data-pipelines
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project

# Runs as a user that owns the environment (the pull step installs into it), not root.
RUN useradd --create-home --uid 10001 flows && chown -R flows /opt/data-pipelines
USER flows
WORKDIR /home/flows
CMD ["prefect", "flow-run", "execute"]

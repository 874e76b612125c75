# slotfill: one image for the API (default command) and for training (compose service `train`).
#
# Build arguments (defaults are the real-world build):
#   BASE_IMAGE         base of both stages; any Debian-like image with python3 (3.10+) and its venv module
#   TORCH_INDEX_URL    where torch==2.13.0 comes from: PyPI's torch would be a multi-GB CUDA build
# Local build inputs, the git-ignored build-context folder `wheels/` (empty or absent: not used):
#   wheels/*.whl                 installed first, instead of the index (e.g. the CPU torch wheel)
#   wheels/ca-certificates.crt   the CA bundle pip trusts in the build stage (a TLS-inspecting proxy);
#                                it stays in the build stage, the final image never holds it
ARG BASE_IMAGE=python:3.11-slim

# Build stage: a venv with CPU-only torch and the project (models, training, serving; no extras).
FROM ${BASE_IMAGE} AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=120
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# `wheels*` also matches nothing: a clean clone without the folder builds the same way.
COPY pyproject.toml wheels* /wheels/
RUN set -eu; \
    if [ -f /wheels/ca-certificates.crt ]; then export PIP_CERT=/wheels/ca-certificates.crt; fi; \
    if ls /wheels/*.whl >/dev/null 2>&1; then \
        pip install --find-links /wheels /wheels/*.whl; \
    fi; \
    if ! pip show torch >/dev/null 2>&1; then \
        pip install torch==2.13.0 --index-url "$TORCH_INDEX_URL"; \
    fi; \
    python -W ignore -c "import torch; assert torch.__version__.split('+')[0] == '2.13.0', torch.__version__; \
assert not torch.version.cuda, 'a CUDA build of torch: put the CPU wheel in wheels/ or use the CPU index'"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY models models
COPY training training
COPY serving serving
RUN set -eu; \
    if [ -f /wheels/ca-certificates.crt ]; then export PIP_CERT=/wheels/ca-certificates.crt; fi; \
    pip install --find-links /wheels .; \
    pip uninstall -y pip

# Final stage: the venv only; no compilers, no build files, no pip; runs as a non-root user.
FROM ${BASE_IMAGE}
RUN useradd --create-home --uid 10001 slotfill \
    && mkdir -p /app/checkpoints /app/runs /app/data \
    && chown slotfill:slotfill /app/checkpoints /app/runs
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY configs configs
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SLOTFILL_HOST=0.0.0.0 \
    SLOTFILL_PORT=8000 \
    SLOTFILL_CHECKPOINT=/app/checkpoints/atis-best/best.ckpt
USER slotfill
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 CMD ["python", "-m", "serving.healthcheck"]
CMD ["slotfill-serve"]

# slotfill: one image for the API (default command) and for training (compose service `train`).
# Build stage: a venv with CPU-only torch from PyTorch's CPU wheel index (a few hundred MB, no CUDA).
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
WORKDIR /src
COPY pyproject.toml README.md ./
COPY models models
COPY training training
COPY serving serving
RUN pip install .

# Final stage: the venv only; no compilers, no build files; runs as a non-root user.
FROM python:3.11-slim
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

#!/usr/bin/env bash
# Requests/s of POST /v1/tag, the same checkpoint served by the same server twice, one after the
# other: as a process on the host, and in the image (docker run, 2 CPUs as in docker-compose.yml),
# reached through its published port (docker-proxy) and through its bridge address. Client: wrk,
# one thread, each concurrency for DURATION seconds after a warm-up.
#   bash tests/deploy/bench_container.sh CHECKPOINT [IMAGE] [DURATION]
set -euo pipefail
cd "$(dirname "$0")/../.."
CKPT=$(realpath "$1"); IMAGE=${2:-slotfill:latest}; DURATION=${3:-10}
HOST_PORT=${BENCH_HOST_PORT:-8160}; CONTAINER_PORT=${BENCH_CONTAINER_PORT:-8161}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
lua=$(mktemp --suffix .lua)
cat >"$lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"text": "show me flights from boston to denver on monday morning"}'
wrk.headers["Content-Type"] = "application/json"
LUA
name="slotfill-bench-$$"
server=""
cleanup() { [ -z "$server" ] || kill "$server" 2>/dev/null || true; docker rm -f "$name" >/dev/null 2>&1 || true; rm -f "$lua"; }
trap cleanup EXIT
wait_ready() { for _ in $(seq 240); do curl -sf "$1/readyz" >/dev/null && return 0; sleep 0.5; done; echo "not ready: $1"; exit 1; }
measure() { # label url
  for c in 1 16; do
    wrk -t1 -c"$c" -d3s -s "$lua" "$2/v1/tag" >/dev/null
    out=$(wrk -t1 -c"$c" -d"${DURATION}s" --latency -s "$lua" "$2/v1/tag")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out"); p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out"); bad=$(awk '/Non-2xx|Socket errors/' <<<"$out")
    printf '%-34s c=%-3s %8s req/s  p50 %-8s p99 %-8s %s\n' "$1" "$c" "$rps" "$p50" "$p99" "$bad"
  done
}
SLOTFILL_TORCH_THREADS=1 SLOTFILL_WORKERS=1 .venv/bin/slotfill-serve --checkpoint "$CKPT" \
  --host 127.0.0.1 --port "$HOST_PORT" --log-level warning &
server=$!
docker run -d --name "$name" --cpus 2 --memory 2g -p "127.0.0.1:$CONTAINER_PORT:8000" -e SLOTFILL_TORCH_THREADS=1 \
  -e SLOTFILL_LOG_LEVEL=warning -v "$CKPT:/app/checkpoints/atis-best/best.ckpt:ro" "$IMAGE" >/dev/null
wait_ready "http://127.0.0.1:$HOST_PORT"; wait_ready "http://127.0.0.1:$CONTAINER_PORT"
bridge=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$name")
echo "checkpoint $CKPT ($(sha256sum "$CKPT" | cut -c1-12)); image $IMAGE; $(getconf _NPROCESSORS_ONLN) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
measure "host process" "http://127.0.0.1:$HOST_PORT"
measure "container, published port" "http://127.0.0.1:$CONTAINER_PORT"
measure "container, bridge address" "http://$bridge:8000"
measure "host process (again)" "http://127.0.0.1:$HOST_PORT"

#!/usr/bin/env bash
# End-to-end test of the docker compose deployment (README, "Deployment"), run by .ci/run after the
# unit tests. It builds the image, trains a tiny model with the `train` service into the shared
# `checkpoints` volume, serves it with `api`, tags a sentence from the host, retrains, hot-reloads
# the api with SIGHUP under client load, and checks that no request failed and the new checkpoint
# is served. It prints the image size, the build times and the time from `up` to healthy.
#
# Where no registry is reachable, the base image is made from Debian packages (debootstrap) once and
# kept, and the CPU torch wheel and the host's CA bundle are handed to the build through wheels/.
# Knobs (environment):
#   SLOTFILL_BASE_IMAGE    use this base image instead of the debootstrap'd one (e.g. python:3.11-slim)
#   SLOTFILL_DEPLOY_PORT   host port of the api under test [8150]
#   DEBIAN_MIRROR          [http://deb.debian.org/debian]
# It skips (exit 0, with a loud warning) only where no Docker engine can be started.
set -euo pipefail
# The whole script is one block, read before it runs: editing the file meanwhile cannot change a run.
{
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

PORT=${SLOTFILL_DEPLOY_PORT:-8150}
URL="http://127.0.0.1:$PORT"
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/slotfill
BASE_TAR="$CACHE/debian-bookworm-python3-rootfs.tar"
PYTHON=.venv/bin/python
[ -x "$PYTHON" ] || PYTHON=python3
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
started=$(date +%s)

say() { printf '\n=== %s\n' "$*"; }
skip() {
  printf '\n%s\n' "################################################################################" >&2
  printf '#### WARNING: DEPLOYMENT TEST SKIPPED: %s\n' "$*" >&2
  printf '#### The Docker image and docker-compose.yml were NOT tested.\n' >&2
  printf '%s\n\n' "################################################################################" >&2
  exit 0
}
apt_install() { # packages; apt-get update only when the first try fails
  $SUDO apt-get install -y -q "$@" >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q "$@" >/dev/null; }
}

# --- a Docker engine ---------------------------------------------------------------------------
if ! command -v docker >/dev/null 2>&1; then
  apt_install docker.io || skip "docker is not installed and apt-get could not install docker.io"
fi
if ! docker info >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v dockerd >/dev/null 2>&1; then
    say "starting dockerd (log: /tmp/dockerd.log)"
    dockerd >/tmp/dockerd.log 2>&1 &
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  fi
  docker info >/dev/null 2>&1 || skip "no Docker engine is running and none could be started (see /tmp/dockerd.log)"
fi
if docker compose version >/dev/null 2>&1; then
  COMPOSE_CMD=(docker compose)
else
  command -v docker-compose >/dev/null 2>&1 || apt_install docker-compose
  COMPOSE_CMD=(docker-compose)
fi
echo "engine $(docker version -f '{{.Server.Version}}'); compose: ${COMPOSE_CMD[*]} ($("${COMPOSE_CMD[@]}" version --short))"

# --- the base image ----------------------------------------------------------------------------
BASE=${SLOTFILL_BASE_IMAGE:-slotfill-base:bookworm}
if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  if [ -n "${SLOTFILL_BASE_IMAGE:-}" ]; then
    docker pull "$BASE"
  elif [ -f "$BASE_TAR" ]; then
    say "importing the base image $BASE from $BASE_TAR"
    docker import - "$BASE" <"$BASE_TAR" >/dev/null
  else
    say "making the base image $BASE with debootstrap (Debian bookworm, python3; a few minutes, once)"
    command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
    rootfs=$(mktemp -d /tmp/slotfill-rootfs.XXXXXX)
    t0=$(date +%s)
    $SUDO debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      bookworm "$rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >/tmp/slotfill-debootstrap.log
    # Package caches and lists, docs, man pages and translations: not needed in an image.
    $SUDO rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/{doc,man,locale,info}/*
    mkdir -p "$CACHE"
    $SUDO tar -C "$rootfs" -c . >"$BASE_TAR.tmp" && mv "$BASE_TAR.tmp" "$BASE_TAR"
    $SUDO rm -rf "$rootfs"
    docker import - "$BASE" <"$BASE_TAR" >/dev/null
    echo "base image made in $(($(date +%s) - t0)) s; its root file system is kept in $BASE_TAR"
  fi
fi

# --- local build inputs: the CPU torch wheel and the CA bundle pip trusts ---------------------------
mkdir -p wheels
if ! ls wheels/torch-2.13.0*.whl >/dev/null 2>&1; then
  "$PYTHON" -m pip download -q torch==2.13.0 --no-deps -d wheels/
fi
for wheel in wheels/torch-2.13.0*.whl; do
  case "$wheel" in
    *+cpu*) ;;
    *) echo "not a CPU build, not used (the build takes torch from PyTorch's CPU index): $wheel"; rm -f "$wheel" ;;
  esac
done
CA=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
if [ -f "$CA" ]; then cp "$CA" wheels/ca-certificates.crt; fi

# --- a compose project of its own --------------------------------------------------------------
work=$(mktemp -d /tmp/slotfill-deploy.XXXXXX)
export COMPOSE_PROJECT_NAME="slotfill-deploy-$$"
export SLOTFILL_IMAGE=slotfill:deploy-test SLOTFILL_BASE_IMAGE="$BASE" SLOTFILL_BUILD_NETWORK=host
export SLOTFILL_API_PORT=$PORT SLOTFILL_DATA_DIR="$work/data"
compose() { "${COMPOSE_CMD[@]}" "$@"; }
loop_pid=""
cleanup() {
  status=$?
  [ -z "$loop_pid" ] || kill "$loop_pid" 2>/dev/null || true
  if [ "$status" != 0 ]; then
    echo "FAILED (exit $status); the api's log:" >&2
    compose logs --no-color --tail 60 api >&2 || true
  fi
  compose --profile train down -v --remove-orphans >/dev/null 2>&1 || true
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

say "building the image (${COMPOSE_CMD[*]} build api; base $BASE)"
t0=$(date +%s)
compose build api >"$work/build.log" 2>&1 || { tail -40 "$work/build.log"; exit 1; }
build_s=$(($(date +%s) - t0))
t0=$(date +%s)
compose build api >"$work/rebuild.log" 2>&1 || { tail -40 "$work/rebuild.log"; exit 1; }
rebuild_s=$(($(date +%s) - t0))
size_mb=$(($(docker image inspect -f '{{.Size}}' "$SLOTFILL_IMAGE") / 1000000))
echo "build ${build_s} s, rebuild with every layer cached ${rebuild_s} s; image $SLOTFILL_IMAGE: ${size_mb} MB"

say "a tiny ATIS-format corpus and config in $work/data"
"$PYTHON" -m tests.deploy.make_corpus "$work/data"
cp tests/deploy/tiny.yaml "$work/data/tiny.yaml"
chmod -R a+rX "$work"  # the containers run as a non-root user
train() { # seed
  compose run --rm -T train fit --config configs/atis-best.yaml --config data/tiny.yaml --seed_everything "$1" \
    >"$work/train-$1.log" 2>&1 || { tail -40 "$work/train-$1.log"; return 1; }
}
checkpoint_sha() {
  compose run --rm -T --entrypoint sha256sum train /app/checkpoints/atis-best/best.ckpt 2>"$work/sha.log" | cut -d' ' -f1
}

say "training (compose run --rm train fit ..., seed 1)"
t0=$(date +%s)
train 1
sha1=$(checkpoint_sha) || { cat "$work/sha.log"; exit 1; }
echo "trained in $(($(date +%s) - t0)) s; checkpoint sha256 $sha1"

say "serving (compose up -d api)"
t0=$(date +%s)
compose up -d api
container=$(compose ps -q api)
# The healthcheck's start period is 60 s and it fails 3 times 10 s apart before "unhealthy".
while :; do
  state=$(docker inspect -f '{{.State.Status}} {{.State.Health.Status}}' "$container")
  [ "$state" = "running healthy" ] && break
  case "$state" in running\ starting) ;; *) echo "the api container is $state"; exit 1 ;; esac
  [ $(($(date +%s) - t0)) -lt 150 ] || { echo "the api is not healthy 150 s after up: $state"; exit 1; }
  sleep 0.5
done
healthy_s=$(($(date +%s) - t0))
echo "healthy ${healthy_s} s after up"
user=$(docker exec "$container" id -u)
[ "$user" != 0 ] || { echo "the api container runs as root"; exit 1; }
echo "api runs as uid $user ($(docker exec "$container" id -un))"
"$PYTHON" -m tests.deploy.api_client tag "$URL"
served=$("$PYTHON" -m tests.deploy.api_client model "$URL")
[ "$served" = "$sha1" ] || { echo "/v1/model reports $served, the volume holds $sha1"; exit 1; }

say "retraining (seed 2) and hot-reloading with SIGHUP while a client keeps sending requests"
"$PYTHON" -m tests.deploy.api_client loop "$URL" "$work/stop" >"$work/loop.log" 2>&1 &
loop_pid=$!
train 2
sha2=$(checkpoint_sha) || { cat "$work/sha.log"; exit 1; }
[ "$sha2" != "$sha1" ] || { echo "retraining left the same checkpoint ($sha1)"; exit 1; }
compose kill -s SIGHUP api
"$PYTHON" -m tests.deploy.api_client wait-model "$URL" "$sha2" --timeout 60
sleep 2
touch "$work/stop"
wait "$loop_pid" || { loop_pid=""; cat "$work/loop.log"; exit 1; }
loop_pid=""
cat "$work/loop.log"
grep -q "\"${sha1:0:12}\"" "$work/loop.log" && grep -q "\"${sha2:0:12}\"" "$work/loop.log" \
  || { echo "the client loop did not span the reload (both versions must have answered)"; exit 1; }
"$PYTHON" -m tests.deploy.api_client tag "$URL"

say "deployment test passed in $(($(date +%s) - started)) s"
echo "image ${size_mb} MB; build ${build_s} s, cached rebuild ${rebuild_s} s; up -> healthy ${healthy_s} s"
exit
}

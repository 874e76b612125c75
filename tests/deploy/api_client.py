"""The deployment test's HTTP client (standard library only), run on the host against the api container.

    python -m tests.deploy.api_client tag URL              # POST /v1/tag; the tags of a known sentence
    python -m tests.deploy.api_client model URL            # print /v1/model's checkpoint_sha256
    python -m tests.deploy.api_client wait-model URL SHA   # until /v1/model reports SHA (or time out)
    python -m tests.deploy.api_client loop URL STOP_FILE   # POST /v1/tag until STOP_FILE exists

Each exits 1 with a message saying what was wrong. `loop` prints how many requests it sent, how many
failed (an error status, a refused or reset connection) and the model versions that answered.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

SENTENCE = "show me flights from boston to denver on monday"
# The generated corpus (tests/conftest.py) tags these words so; the tiny model learns them in two epochs.
EXPECTED = {"boston": "B-fromloc.city_name", "denver": "B-toloc.city_name", "monday": "B-depart_date.day_name"}


class Failed(Exception):
    pass


def request(url: str, payload: object | None = None, timeout: float = 10.0) -> dict:
    data = None if payload is None else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"} if data else {}
    req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as error:
        raise Failed(f"{req.method} {url}: HTTP {error.code}: {error.read()[:300]!r}") from error
    except (urllib.error.URLError, OSError) as error:
        raise Failed(f"{req.method} {url}: {error}") from error


def tag(base: str) -> dict:
    return request(f"{base}/v1/tag", {"text": SENTENCE})


def check_tags(base: str) -> None:
    answer = tag(base)
    tags = {word["text"]: word["tag"] for word in answer["words"]}
    wrong = {word: (tags.get(word), want) for word, want in EXPECTED.items() if tags.get(word) != want}
    if wrong:
        raise Failed(f"wrong tags (got, expected): {wrong}; answer: {answer}")
    print("tags ok:", " ".join(f"{word['text']}/{word['tag']}" for word in answer["words"]))
    print(f"intent: {answer['intent']}; model {answer['model']['version']}")


def model_sha(base: str) -> str:
    return request(f"{base}/v1/model")["checkpoint_sha256"]


def wait_model(base: str, sha: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        try:
            seen = model_sha(base)
        except Failed:
            pass
        if seen == sha:
            print(f"/v1/model reports {sha}")
            return
        time.sleep(0.2)
    raise Failed(f"/v1/model still reports {seen or 'nothing'} after {timeout:.0f} s, expected {sha}")


def loop(base: str, stop_file: Path, interval: float) -> None:
    sent, failures, versions = 0, [], {}
    while not stop_file.exists():
        sent += 1
        try:
            version = tag(base)["model"]["version"]
            versions[version] = versions.get(version, 0) + 1
        except Failed as error:
            failures.append(str(error))
        time.sleep(interval)  # steady traffic that leaves the CPU to the training running meanwhile
    print(json.dumps({"requests": sent, "failed": len(failures), "versions": versions}))
    for failure in failures[:5]:
        print(f"failed: {failure}")
    if failures or not sent:
        raise Failed(f"{len(failures)} of {sent} requests failed")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["tag", "model", "wait-model", "loop"])
    parser.add_argument("url", help="base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("arg", nargs="?", help="the SHA-256 (wait-model) or the stop file (loop)")
    parser.add_argument("--timeout", type=float, default=60.0, help="wait-model: seconds")
    parser.add_argument("--interval", type=float, default=0.02, help="loop: seconds between requests")
    args = parser.parse_args()
    base = args.url.rstrip("/")
    try:
        if args.action == "tag":
            check_tags(base)
        elif args.action == "model":
            print(model_sha(base))
        elif args.action == "wait-model":
            wait_model(base, args.arg, args.timeout)
        else:
            loop(base, Path(args.arg), args.interval)
    except Failed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Screenshot of the playground page (docs/playground.png): serves CHECKPOINT on a free 127.0.0.1
port, opens `/?text=...` in headless Chromium, and writes a PNG cropped to the page's content.

    python scripts/playground_screenshot.py CHECKPOINT docs/playground.png \
        --synonyms docs/synonyms-example.yml --text "i need a flight from new york city to denver tomorrow morning"

`--synonyms FILE` serves a copy of the checkpoint carrying those synonyms (what training with
`--data.synonyms FILE` stores; the weights are the same), so the page shows canonical values.

Needs Debian's `chromium` and `chromium-driver` (or SLOTFILL_CHROMIUM / SLOTFILL_CHROMEDRIVER).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from models.checkpoint import read_bundle, save_bundle
from models.synonyms import load_synonyms

REPO = Path(__file__).resolve().parents[1]
FLAGS = (
    "--headless --no-sandbox --disable-gpu --disable-dev-shm-usage --disable-quic --no-first-run "
    "--disable-background-networking --disable-component-update --disable-sync --hide-scrollbars"
).split()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--text", default="i need a flight from new york city to denver tomorrow morning")
    parser.add_argument("--synonyms", type=Path, help="synonym file to add to a copy of the checkpoint")
    parser.add_argument("--width", type=int, default=1000, help="window width in CSS pixels")
    parser.add_argument("--colours", type=int, default=96, help="palette size of the PNG (smaller file)")
    args = parser.parse_args()

    chromium = os.environ.get("SLOTFILL_CHROMIUM") or shutil.which("chromium")
    driver_path = os.environ.get("SLOTFILL_CHROMEDRIVER") or shutil.which("chromedriver")
    if not chromium or not driver_path:
        print("error: needs chromium and chromedriver (apt-get install chromium chromium-driver)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = args.checkpoint
        if args.synonyms is not None:
            bundle = read_bundle(checkpoint)
            bundle["synonyms"] = load_synonyms(args.synonyms).to_json()
            checkpoint = Path(folder) / checkpoint.name
            save_bundle(bundle, checkpoint)
        return shoot(args, checkpoint, chromium, driver_path)


def shoot(args: argparse.Namespace, checkpoint: Path, chromium: str, driver_path: str) -> int:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "SLOTFILL_LOG_LEVEL": "warning"}
    server = subprocess.Popen(
        [sys.executable, "-m", "serving", "--checkpoint", str(checkpoint), "--port", str(port)], cwd=REPO, env=env
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                print(f"error: the server exited with {server.returncode}", file=sys.stderr)
                return 1
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                print("error: the server never became ready", file=sys.stderr)
                return 1
            time.sleep(0.2)
        # one request first, so the page's figure is a request's round trip, not the first one's set-up
        httpx.post(f"{base}/v1/tag", json={"text": args.text}, timeout=60).raise_for_status()
        with tempfile.TemporaryDirectory() as profile:
            options = Options()
            options.binary_location = chromium
            for flag in FLAGS:
                options.add_argument(flag)
            options.add_argument(f"--user-data-dir={profile}")
            options.add_argument(f"--window-size={args.width},1400")
            driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
            try:
                driver.get(f"{base}/?{urlencode({'text': args.text})}")
                WebDriverWait(driver, 60).until(
                    lambda d: (
                        d.find_element("id", "status-one").text.startswith("tagged")
                        and "loading" not in d.find_element("id", "model-name").text
                    )
                )
                # no caret or focus ring in the picture
                driver.execute_script("document.activeElement.blur()")
                height = driver.execute_script("return document.querySelector('footer').getBoundingClientRect().bottom")
                png = Path(profile) / "page.png"
                driver.save_screenshot(str(png))
            finally:
                driver.quit()
            image = Image.open(png).convert("RGB")
            image = image.crop((0, 0, image.width, min(image.height, int(height) + 16)))
            image = image.quantize(colors=args.colours, method=Image.Quantize.MEDIANCUT)
            args.output.parent.mkdir(parents=True, exist_ok=True)
            image.save(args.output, optimize=True)
        print(f"{args.output}: {image.width}x{image.height}, {args.output.stat().st_size // 1024} KiB")
        return 0
    finally:
        server.terminate()
        server.wait(15)


if __name__ == "__main__":
    sys.exit(main())

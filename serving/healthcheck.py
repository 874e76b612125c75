"""`python -m serving.healthcheck`: exit 0 when the local service answers `/readyz` with 200, else 1.

The container healthcheck; it uses only the standard library so it starts fast.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def is_ready(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main() -> int:
    port = os.environ.get("SLOTFILL_PORT", "8000")
    url = os.environ.get("SLOTFILL_HEALTHCHECK_URL", f"http://127.0.0.1:{port}/readyz")
    return 0 if is_ready(url) else 1


if __name__ == "__main__":
    sys.exit(main())

"""`GET /`: the playground, one self-contained HTML page (inline CSS and JavaScript, no external
fetches) that tags what a person types through `/v1/tag` and `/v1/tag/batch`."""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

# The page loads nothing from elsewhere and talks only to this service; the policy makes the
# browser hold it to that.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@cache
def page() -> str:
    """The page's HTML, read once from the package data."""
    return resources.files("serving").joinpath("static", "playground.html").read_text(encoding="utf-8")


router = APIRouter()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def playground() -> HTMLResponse:
    return HTMLResponse(page(), headers=_HEADERS)

"""Offline and for everyone: /docs and the app from this server alone (no CDN)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from tests.web.conftest import WebStack


def _only_this_server(page: Any, base_url: str) -> list[str]:
    """Abort every request to another origin (as on a network without internet); returns
    the list of what was attempted elsewhere."""
    origin = urlsplit(base_url).netloc
    elsewhere: list[str] = []

    def route(r: Any) -> None:
        if urlsplit(r.request.url).netloc == origin:
            r.continue_()
        else:
            elsewhere.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    return elsewhere


def test_docs_work_offline(web_stack: WebStack, browser_page: Any) -> None:
    page = browser_page
    elsewhere = _only_this_server(page, web_stack.base_url)
    page.goto(web_stack.base_url + "/docs")
    page.locator(".swagger-ui .info .title").filter(has_text="hemhub API").wait_for()
    page.locator(".opblock-summary-path").filter(has_text="/api/v1/ui-config").first.wait_for()
    assert elsewhere == []
    refused = [m for m in page.console_messages_seen if "Content Security Policy" in m]
    assert refused == []


def test_app_loads_nothing_from_elsewhere(
    web_stack: WebStack, browser_page: Any, sign_in: Any
) -> None:
    page = browser_page
    elsewhere = _only_this_server(page, web_stack.base_url)
    sign_in(page, "nurse-a")
    assert elsewhere == []
    refused = [m for m in page.console_messages_seen if "Content Security Policy" in m]
    assert refused == []

"""Sign-in through OpenID Connect (authorization code + PKCE) at the demo provider."""

from __future__ import annotations

from typing import Any

from tests.web.conftest import WebStack


def test_nurse_signs_in_and_out(web_stack: WebStack, browser_page: Any, sign_in: Any) -> None:
    page = browser_page
    who = sign_in(page, "nurse-a")
    assert page.locator(".who-role").inner_text() == "Sjuksköterska"  # Swedish by default
    # The code and state never stay in the address bar (nor in history).
    assert "code=" not in page.url and "state=" not in page.url
    token = page.evaluate("sessionStorage.getItem('hemhub.auth.token')")
    assert token and token.count(".") == 2
    page.locator("#sign-out").click()
    page.locator("#sign-in").wait_for()
    assert page.evaluate("sessionStorage.getItem('hemhub.auth.token')") is None
    assert who.tenant == "demo"

"""The dashboard's token file, the Origin rule and the failed-attempt limit."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from dermaguard.ui.web.auth import (
    FailureLimiter,
    TokenError,
    load_or_create_token,
    origin_allowed,
    token_matches,
)


def test_the_token_is_made_once_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "state" / "web-token"
    token = load_or_create_token(path)
    assert len(token) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_token(path) == token  # the next start reads the same one


def test_a_short_token_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "web-token"
    path.write_text("abc\n")
    with pytest.raises(TokenError, match="web-token is too short"):
        load_or_create_token(path)


def test_an_unreadable_place_says_so(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(TokenError, match=r"cannot read the web token .*Not a directory"):
        load_or_create_token(blocker / "web-token")


def test_tokens_must_match_exactly() -> None:
    assert token_matches("s3cret-token-value", "s3cret-token-value")
    assert not token_matches("s3cret-token-valuE", "s3cret-token-value")
    assert not token_matches(None, "s3cret-token-value")
    assert not token_matches("", "s3cret-token-value")


def test_only_this_servers_origin_may_post() -> None:
    assert origin_allowed("http://pi.lan:8080", "pi.lan:8080", "http")
    assert not origin_allowed("http://evil.example", "pi.lan:8080", "http")
    assert not origin_allowed("https://pi.lan:8080", "pi.lan:8080", "http")
    assert not origin_allowed(None, "pi.lan:8080", "http")
    assert not origin_allowed("null", "pi.lan:8080", "http")


def test_failures_are_limited_per_address_and_forgotten_after_the_window() -> None:
    now = [0.0]
    limiter = FailureLimiter(max_failures=3, window_s=60.0, clock=lambda: now[0])
    for _ in range(3):
        assert not limiter.blocked("10.0.0.5")
        limiter.failed("10.0.0.5")
    assert limiter.blocked("10.0.0.5")
    assert not limiter.blocked("10.0.0.6")  # another address is not punished
    assert limiter.retry_after_s("10.0.0.5") == 60
    now[0] = 61.0
    assert not limiter.blocked("10.0.0.5")

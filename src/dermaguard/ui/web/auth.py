"""The dashboard's access token, its cookie, the Origin check and the failed-attempt limit.

One random token, made at first start and kept 0600, is the key to the dashboard: opening the
``/?token=…`` link once sets an HttpOnly, SameSite=Strict cookie; every page and API needs it.
The token is compared in constant time and never logged (the query string is never logged).
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Final

COOKIE: Final = "dermaguard_token"
#: Failed attempts allowed per client address in :data:`WINDOW_S`; more get 429.
MAX_FAILURES: Final = 5
WINDOW_S: Final = 60.0
_TOKEN_BYTES: Final = 24


class TokenError(Exception):
    """The token file cannot be made or read (the message names it and says why)."""


def load_or_create_token(path: Path) -> str:
    """The token in ``path``; made (mode 0600, directories 0700) when the file does not exist."""
    try:
        text = path.read_text("utf-8").strip()
    except FileNotFoundError:
        text = ""
    except OSError as exc:
        raise TokenError(f"cannot read the web token {path}: {exc.strerror or exc}") from None
    if text:
        if len(text) < 16:
            raise TokenError(f"the web token in {path} is too short (at least 16 characters)")
        return text
    token = secrets.token_urlsafe(_TOKEN_BYTES)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(token + "\n")
        path.chmod(0o600)
    except OSError as exc:
        raise TokenError(f"cannot write the web token {path}: {exc.strerror or exc}") from None
    return token


def token_matches(given: str | None, token: str) -> bool:
    """Constant-time comparison, so the time taken says nothing about the token."""
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8"))


def origin_allowed(origin: str | None, host: str | None, scheme: str) -> bool:
    """A state-changing request must come from a page of this server.

    Browsers send ``Origin`` with every POST; a missing one (an old client, a script) or a
    foreign one is refused, so another site's page cannot make the browser send a command.
    """
    if not origin or not host:
        return False
    return origin == f"{scheme}://{host}"


class FailureLimiter:
    """At most :data:`MAX_FAILURES` wrong tokens per address per :data:`WINDOW_S` seconds."""

    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, address: str) -> deque[float]:
        now = self._clock()
        times = self._failures.setdefault(address, deque())
        while times and now - times[0] > self.window_s:
            times.popleft()
        if not times:
            del self._failures[address]
            times = self._failures.setdefault(address, deque())
        return times

    def blocked(self, address: str) -> bool:
        return len(self._recent(address)) >= self.max_failures

    def failed(self, address: str) -> None:
        self._recent(address).append(self._clock())
        if len(self._failures) > 10_000:  # a flood of addresses: forget the oldest
            self._failures.pop(next(iter(self._failures)))

    def retry_after_s(self, address: str) -> int:
        times = self._recent(address)
        if not times:
            return 0
        return max(1, round(self.window_s - (self._clock() - times[0])))

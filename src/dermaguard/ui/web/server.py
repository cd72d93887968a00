"""The dashboard's HTTP server (aiohttp): pages, the live stream, commands and history.

aiohttp because one asyncio process serves the pages, holds every browser's server-sent-event
stream and runs the MQTT hand-off without threads per client; it is a mature, well-kept
library packaged by Debian (python3-aiohttp), with no compiler needed on a Pi.

Security on a home network (see :mod:`dermaguard.ui.web.auth`): every route but the sign-in page
and ``/healthz`` needs the token cookie; state-changing requests are POSTs whose ``Origin`` must
be this server; wrong tokens are rate-limited per address; errors are short JSON or text, never
a traceback; the request log never contains a query string (where the token travels once).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from dermaguard.config.load import Config
from dermaguard.core.events import CommandName
from dermaguard.store import StoreError, open_readonly
from dermaguard.ui.history_view import steadiness_trend, technique_figures
from dermaguard.ui.web.auth import (
    COOKIE,
    MAX_FAILURES,
    FailureLimiter,
    origin_allowed,
    token_matches,
)
from dermaguard.ui.web.live import WEB_COMMANDS, Hub
from dermaguard.ui.web.ready import readiness
from dermaguard.ui.web.svg import calendar_svg, trace_svg

log = logging.getLogger(__name__)

_STATIC: Final = {
    "app.js": "text/javascript",
    "app.css": "text/css",
    "icon.svg": "image/svg+xml",
}
_SECURITY_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
_PUBLIC: Final = frozenset({"/login", "/healthz", "/static/app.css", "/static/icon.svg"})
MAX_BODY: Final = 4096
HEARTBEAT_S: Final = 15.0


@dataclass
class WebContext:
    """What the handlers need, kept on the application."""

    config: Config
    hub: Hub
    token: str
    history_path: Path
    calibration_path: Path
    tls: bool
    limiter: FailureLimiter


CTX: Final = web.AppKey("ctx", WebContext)


def _asset(name: str) -> bytes:
    return resources.files("dermaguard.ui.web").joinpath("static", name).read_bytes()


def _client_address(request: web.Request) -> str:
    return request.remote or "unknown"


def _error(status: int, message: str, **headers: str) -> web.Response:
    """A short JSON error naming what was wrong; never a traceback."""
    return web.json_response({"error": message}, status=status, headers=headers)


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


@web.middleware
async def guard(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Token cookie, Origin check on POSTs, rate limit, security headers, no tracebacks."""
    ctx = request.app[CTX]
    address = _client_address(request)
    try:
        if request.path not in _PUBLIC:
            query_token = request.query.get("token")
            if query_token is not None and request.method == "GET" and request.path == "/":
                return _sign_in(ctx, address, query_token, request)
            if not token_matches(request.cookies.get(COOKIE), ctx.token):
                if request.cookies.get(COOKIE):
                    if ctx.limiter.blocked(address):
                        return _locked_out(ctx, address, request)
                    ctx.limiter.failed(address)
                if request.method == "GET" and request.path == "/":
                    return _redirect("/login")
                return _error(403, "sign in first: open the link from `dermaguard web --show-url`")
        if request.method not in ("GET", "HEAD"):
            scheme = "https" if ctx.tls else "http"
            if not origin_allowed(request.headers.get("Origin"), request.host, scheme):
                return _error(403, "refused: this request did not come from the dashboard's page")
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            response = web.Response(status=exc.status, headers=exc.headers)
        else:
            response = _error(exc.status, exc.reason)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:  # our bug: logged with its traceback, the browser gets a short message
        log.exception("error serving %s %s", request.method, request.path)
        response = _error(500, "internal error (details are in the dashboard's log)")
    if not response.prepared:
        for key, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
    return response


def _is_page(request: web.Request) -> bool:
    """A browser opening a page (the sign-in link, the sign-in form): it gets a page to read,
    where a script gets short JSON."""
    return request.path in ("/", "/login")


def _locked_out(ctx: WebContext, address: str, request: web.Request) -> web.Response:
    """429 with ``Retry-After``; a person gets a page saying what happened and when to retry
    (the right token waits too: the limit cannot tell a guess from a mistyped token)."""
    retry = ctx.limiter.retry_after_s(address)
    headers = {"Retry-After": str(retry)}
    if not _is_page(request):
        return _error(429, f"too many wrong tokens: try again in {retry} s", **headers)
    page = _login_page(
        f"Too many wrong tokens from this device. Try again in {retry} seconds.",
        "Signing in is paused for a minute after 5 wrong tries, even with the right token. "
        "Then open the link <code>dermaguard web --show-url</code> prints on the Pi.",
    )
    return web.Response(status=429, text=page, content_type="text/html", headers=headers)


def _sign_in(ctx: WebContext, address: str, given: str, request: web.Request) -> web.Response:
    if ctx.limiter.blocked(address):
        return _locked_out(ctx, address, request)
    if not token_matches(given, ctx.token):
        ctx.limiter.failed(address)
        log.warning("wrong dashboard token from %s", address)
        page = _login_page(
            "That token is not right: it does not match this dashboard's.",
            "Open the link <code>dermaguard web --show-url</code> prints on the Pi now, or "
            f"paste its token below. After {MAX_FAILURES} wrong tries in a minute, signing in "
            "pauses for a minute.",
        )
        return web.Response(status=403, text=page, content_type="text/html")
    response = _redirect("/")
    response.set_cookie(
        COOKIE,
        ctx.token,
        httponly=True,
        samesite="Strict",
        secure=ctx.tls,
        max_age=400 * 24 * 3600,
        path="/",
    )
    return response


def _login_page(message: str = "", detail: str = "") -> str:
    note = f'<p class="bad">{message}</p>' if message else ""
    note += f"<p>{detail}</p>" if detail else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<title>dermaguard: sign in</title><link rel="stylesheet" href="/static/app.css">'
        '</head><body><main class="login"><h1>dermaguard</h1>'
        "<p>This dashboard needs its access token. On the Pi, run "
        "<code>dermaguard web --show-url</code> and open the link (or scan the QR code), "
        "or paste the token here.</p>"
        f"{note}"
        '<form method="post" action="/login"><label for="token">Access token</label>'
        '<input id="token" name="token" type="password" autocomplete="current-password" required>'
        '<button type="submit">Open the dashboard</button></form></main></body></html>'
    )


async def login_get(request: web.Request) -> web.Response:
    return web.Response(text=_login_page(), content_type="text/html")


async def login_post(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    address = _client_address(request)
    if ctx.limiter.blocked(address):
        return _locked_out(ctx, address, request)
    form = await request.post()
    given = form.get("token")
    return _sign_in(ctx, address, given.strip() if isinstance(given, str) else "", request)


async def index(request: web.Request) -> web.Response:
    return web.Response(body=_asset("index.html"), content_type="text/html")


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in _STATIC:
        return _error(404, "no such file")
    return web.Response(body=_asset(name), content_type=_STATIC[name])


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def view(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    return web.json_response({**ctx.hub.view(), "ready": _ready(ctx)})


async def stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: a ``view`` at once and on every change, ``force`` samples, and a
    ``ready`` verdict whenever the view changes."""
    ctx = request.app[CTX]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
            **{k: v for k, v in _SECURITY_HEADERS.items() if k != "Cache-Control"},
        }
    )
    await response.prepare(request)
    client = ctx.hub.subscribe()
    try:
        await response.write(_ready_frame(ctx).encode())
        while True:
            try:
                frame = await asyncio.wait_for(client.queue.get(), HEARTBEAT_S)
            except TimeoutError:
                frame = ": keep-alive\n\n"
            await response.write(frame.encode())
            if frame.startswith("event: view"):
                await response.write(_ready_frame(ctx).encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        ctx.hub.unsubscribe(client)
    return response


def _ready_frame(ctx: WebContext) -> str:
    return f"event: ready\ndata: {json.dumps(_ready(ctx), separators=(',', ':'))}\n\n"


def _ready(ctx: WebContext) -> dict[str, Any]:
    hub = ctx.hub
    m = hub.model
    online = hub.link == "connected" and m.availability == "online"
    now = time.monotonic()
    result = readiness(
        m.snapshot,
        device=hub.topics.device_id,
        online=online,
        now=datetime.now(UTC),
        sterile_left_s=m.sterile_left_s(now),
        remaining_s=m.remaining_s(now),
        rest_s=ctx.config.care.rest_s,
        replace_after_uses=ctx.config.care.replace_after_uses,
        calibrated=ctx.calibration_path.is_file(),
    )
    return result.as_json()


async def command(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    name = request.match_info["name"]
    if name not in WEB_COMMANDS:
        return _error(404, f"no command {name!r} (known: {', '.join(WEB_COMMANDS)})")
    args: dict[str, Any] = {}
    if name == CommandName.SILENCE:
        args["duration_s"] = float(ctx.config.alarm.silence_s)
    result = await ctx.hub.command(name, args)
    log.info("command %s from %s: %s", name, _client_address(request), result.get("ok"))
    return web.json_response(result)


def _reader(ctx: WebContext) -> Any:
    try:
        return open_readonly(ctx.history_path)
    except StoreError as exc:
        raise web.HTTPNotFound(reason=f"no history yet ({exc})") from None


async def history(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    limit = _int_query(request, "limit", 30, 1, 500)
    try:
        reader = open_readonly(ctx.history_path)
    except StoreError:
        return web.json_response({"sessions": [], "note": "no history recorded yet"})
    try:
        sessions = [_so_far(reader, s) for s in reader.recent_sessions(limit)]
    finally:
        reader.close()
    keep = (
        "in_progress",
        "session_no", "status", "started_at", "ended_at", "duration_s", "contact_s", "peak_n",
        "mean_n", "over_episodes", "longest_over_s", "sterile_at_start", "too_soon",
        "roller_id", "roller_use", "end_reason",
    )  # fmt: skip
    rows = [{**{k: s.get(k) for k in keep}, **technique_figures(s)} for s in sessions]
    # Passes and their spread over the last four weeks against the four before (or None).
    trend = steadiness_trend(sessions, time.time())
    return web.json_response({"sessions": rows, "trend": trend})


def _so_far(reader: Any, session: dict[str, Any]) -> dict[str, Any]:
    """A session still open, with what its history holds so far (its over-pressure alarms,
    the peak of its stored trace, its length until now), marked ``in_progress``: a running
    session's summary is only written when it ends."""
    if session.get("status") != "open":
        return session
    over, peak = 0, None
    start_seq = reader.start_seq(int(session["session_no"]))
    if start_seq is not None:
        for event in reader.events(since_seq=start_seq - 1, limit=10_000):
            data = event.get("data") or {}
            if event.get("type") == "session_ended":
                break
            if event.get("type") == "over_pressure":
                over += 1
                force = data.get("force_n")
                if isinstance(force, int | float):
                    peak = force if peak is None else max(peak, force)
    traced = [f for _, f, _ in reader.trace(int(session["session_no"])) if f is not None]
    if traced:
        peak = max([*traced, *([] if peak is None else [peak])])
    started = session.get("started_wall")
    length = time.time() - started if isinstance(started, int | float) else None
    return {
        **session,
        "in_progress": True,
        "over_episodes": over,
        "peak_n": peak,
        "duration_s": None if length is None else max(0.0, length),
    }


def _int_query(request: web.Request, key: str, default: int, low: int, high: int) -> int:
    text = request.query.get(key)
    if text is None:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise web.HTTPBadRequest(reason=f"{key}={text!r} is not allowed: give {low} to {high}")
    return int(text)


async def trace(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    text = request.match_info["session_no"]
    if not text.isdigit() or not 1 <= int(text) <= 10**9:
        return _error(400, f"session {text!r} is not allowed: give a session number")
    number = int(text)
    reader = _reader(ctx)
    try:
        found = reader.session(number)
        if found is None:
            return _error(404, f"no session {number}")
        samples = reader.trace(number)
    finally:
        reader.close()
    # The trace runs on past an idle end (the timeout's tail): the chart ends with the session.
    length = found.get("duration_s") if found.get("status") != "open" else None
    if isinstance(length, int | float) and length > 0:
        samples = [s for s in samples if s[0] <= length]
    svg = trace_svg(
        samples,
        ctx.config.pressure.zones,
        f"session {number}: force over time",
        end_s=length if isinstance(length, int | float) and length > 0 else None,
    )
    return web.Response(text=svg, content_type="image/svg+xml")


async def calendar(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    weeks = _int_query(request, "weeks", 6, 1, 52)
    try:
        reader = open_readonly(ctx.history_path)
    except StoreError:
        sessions: list[dict[str, Any]] = []
    else:
        try:
            sessions = [_so_far(reader, s) for s in reader.recent_sessions(10_000)]
        finally:
            reader.close()
    svg = calendar_svg(sessions, weeks, date.today(), None)
    return web.Response(text=svg, content_type="image/svg+xml")


def make_app(ctx: WebContext) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY)
    app[CTX] = ctx
    app.router.add_get("/", index)
    app.router.add_get("/login", login_get)
    app.router.add_post("/login", login_post)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/api/view", view)
    app.router.add_get("/api/stream", stream)
    app.router.add_post("/api/cmd/{name}", command)
    app.router.add_get("/api/history", history)
    app.router.add_get("/api/history/{session_no}/trace.svg", trace)
    app.router.add_get("/api/calendar.svg", calendar)

    async def on_startup(app: web.Application) -> None:
        ctx.hub.start(asyncio.get_running_loop())

    async def on_shutdown(app: web.Application) -> None:
        ctx.hub.stop()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    return app


def ssl_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if cert is None or key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def bound_address(site: web.TCPSite) -> tuple[str, int]:
    """The address and port a started site really listens on (its first socket)."""
    server = site._server  # aiohttp keeps the asyncio server here; no public accessor
    sockets = getattr(server, "sockets", None) or ()
    for sock in sockets:
        name = sock.getsockname()
        return str(name[0]), int(name[1])
    raise OSError("the dashboard's server has no listening socket")


async def _serve(
    ctx: WebContext,
    host: str,
    port: int,
    tls: ssl.SSLContext | None,
    on_listening: Callable[[str, int], None],
) -> None:
    runner = web.AppRunner(
        make_app(ctx), access_log=None, handle_signals=True, shutdown_timeout=2.0
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=tls)
        await site.start()  # an address or port that cannot be bound raises here
        on_listening(*bound_address(site))
        await asyncio.Event().wait()  # until SIGINT/SIGTERM (GracefulExit)
    finally:
        await runner.cleanup()


def serve(
    ctx: WebContext,
    host: str,
    port: int,
    tls: ssl.SSLContext | None,
    on_listening: Callable[[str, int], None],
) -> None:
    """Serve until SIGINT/SIGTERM. No access log: a request line may carry the token.

    ``on_listening`` is called with the address and port once they are bound, not before: a
    server that cannot bind says so and never claims to be listening.
    """
    with contextlib.suppress(web.GracefulExit, KeyboardInterrupt):
        asyncio.run(_serve(ctx, host, port, tls, on_listening))

"""The dashboard's HTTP surface without a browser or a broker: sign-in, guards and errors.

The app runs in-process (aiohttp's test server); its MQTT link points at a port nothing
listens on, which is also how the page learns to say "no broker".
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from dermaguard.config.load import Config
from dermaguard.core.events import Event, EventType
from dermaguard.mqtt.decode import json_object, parse_state
from dermaguard.mqtt.settings import settings_from_config
from dermaguard.store import Store
from dermaguard.ui.web.auth import COOKIE, FailureLimiter
from dermaguard.ui.web.live import Hub, snapshot_json
from dermaguard.ui.web.server import WebContext, make_app
from support.ports import free_port

TOKEN = "t0ken-for-the-tests-0123456789"


def run(tmp_path: Path, body: Callable[[TestClient[Any, Any]], Awaitable[None]]) -> None:
    config = Config()
    config = type(config)(**{**config.__dict__, "mqtt": type(config.mqtt)(
        **{**config.mqtt.__dict__, "host": "127.0.0.1", "port": free_port()}
    )})  # fmt: skip
    settings = settings_from_config(config)
    ctx = WebContext(
        config=config,
        hub=Hub(settings, config.pressure.zones),
        token=TOKEN,
        history_path=tmp_path / "none.sqlite",
        calibration_path=tmp_path / "calibration.json",
        tls=False,
        limiter=FailureLimiter(),
    )

    async def main() -> None:
        async with TestClient(TestServer(make_app(ctx))) as client:
            await body(client)

    asyncio.run(main())


def test_the_link_sets_a_strict_httponly_cookie_and_leaves_the_address(tmp_path: Path) -> None:
    async def body(client: TestClient[Any, Any]) -> None:
        r = await client.get(f"/?token={TOKEN}", allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/"
        cookie = r.headers["Set-Cookie"]
        assert f"{COOKIE}={TOKEN}" in cookie
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie

    run(tmp_path, body)


def test_every_page_needs_the_cookie(tmp_path: Path) -> None:
    async def body(client: TestClient[Any, Any]) -> None:
        r = await client.get("/", allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/login"
        for path in ("/api/view", "/api/history", "/api/calendar.svg", "/static/app.js"):
            r = await client.get(path)
            assert r.status == 403, path
            assert "sign in first" in (await r.json())["error"]
        r = await client.get(f"/api/view?token={TOKEN}")  # the link works on / only
        assert r.status == 403

    run(tmp_path, body)


def test_bad_requests_get_clear_errors_never_a_traceback(tmp_path: Path) -> None:
    async def body(client: TestClient[Any, Any]) -> None:
        client.session.cookie_jar.update_cookies({COOKIE: TOKEN})
        cases = {
            "/api/history?limit=0": (400, "limit='0' is not allowed: give 1 to 500"),
            "/api/history?limit=abc": (400, "limit='abc' is not allowed: give 1 to 500"),
            "/api/calendar.svg?weeks=99": (400, "weeks='99' is not allowed: give 1 to 52"),
            "/api/history/-1/trace.svg": (400, "session '-1' is not allowed"),
            "/api/history/7/trace.svg": (404, "no history yet"),
            "/nowhere": (404, "Not Found"),
            "/static/../../etc/passwd": (404, ""),
        }
        for path, (status, words) in cases.items():
            r = await client.get(path)
            text = await r.text()
            assert r.status == status, (path, text)
            assert words in text and "Traceback" not in text, (path, text)
        origin = f"http://{client.host}:{client.port}"
        r = await client.post("/api/cmd/reboot", headers={"Origin": origin})
        assert r.status == 404
        assert "no command 'reboot'" in (await r.json())["error"]

    run(tmp_path, body)


def test_without_a_broker_the_view_says_so_and_commands_are_refused(tmp_path: Path) -> None:
    async def body(client: TestClient[Any, Any]) -> None:
        client.session.cookie_jar.update_cookies({COOKIE: TOKEN})
        for _ in range(200):  # paho's first attempt fails at once on a closed port
            view = await (await client.get("/api/view")).json()
            if view["link"] == "lost":
                break
            await asyncio.sleep(0.05)
        assert view["link"] == "lost" and view["link_detail"] == "cannot reach the broker"
        device = next(r for r in view["ready"]["reasons"] if r["key"] == "device")
        assert device["ok"] is None and view["ready"]["verdict"] != "yes"
        origin = f"http://{client.host}:{client.port}"
        r = await client.post("/api/cmd/tare", headers={"Origin": origin})
        assert await r.json() == {
            "command": "tare",
            "ok": False,
            "error": "no connection to the MQTT broker",
        }

    run(tmp_path, body)


def test_the_sign_in_form_takes_a_pasted_token_from_this_origin_only(tmp_path: Path) -> None:
    async def body(client: TestClient[Any, Any]) -> None:
        origin = f"http://{client.host}:{client.port}"
        r = await client.post(
            "/login", data={"token": "nope"}, headers={"Origin": origin}, allow_redirects=False
        )
        assert r.status == 403 and "That token is not right:" in await r.text()
        r = await client.post(
            "/login", data={"token": TOKEN}, headers={"Origin": "http://evil.example"}
        )
        assert r.status == 403 and "Set-Cookie" not in r.headers
        r = await client.post(
            "/login",
            data={"token": f" {TOKEN} "},
            headers={"Origin": origin},
            allow_redirects=False,
        )
        assert r.status == 303 and f"{COOKIE}={TOKEN}" in r.headers["Set-Cookie"]

    run(tmp_path, body)


def test_guessing_cookies_is_rate_limited_too(tmp_path: Path) -> None:
    async def body(client: TestClient[Any, Any]) -> None:
        codes = []
        for i in range(7):
            client.session.cookie_jar.update_cookies({COOKIE: f"guess-{i:02d}-xxxxxxxxxxxxxxxx"})
            codes.append((await client.get("/api/view")).status)
        assert codes == [403] * 5 + [429] * 2

    run(tmp_path, body)


def test_the_history_api_gives_passes_and_steadiness_unknown_for_old_sessions(
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path / "none.sqlite", "dev")
    technique = {
        "passes": 46,
        "pass_force_n": 1.9,
        "steadiness_cv": 0.12,
        "zone_share": {"light": 0.1, "ok": 0.8, "high": 0.1, "over": 0.0},
        "passes_high": 3,
        "passes_over": 0,
        "longest_ok_s": 8.0,
    }
    yesterday = time.time() - 86_400
    store.append_event(Event(EventType.SESSION_ENDED, 1.0, {"session_no": 1}), yesterday)
    store.append_event(
        Event(EventType.SESSION_ENDED, 2.0, {"session_no": 2, "technique": technique}),
        yesterday + 9,
    )
    store.close()

    async def body(client: TestClient[Any, Any]) -> None:
        client.session.cookie_jar.update_cookies({COOKIE: TOKEN})
        answer = await (await client.get("/api/history")).json()
        figures = {s["session_no"]: (s["passes"], s["steadiness_cv"]) for s in answer["sessions"]}
        assert figures == {2: (46, 0.12), 1: (None, None)}
        # The trend leaves out the session whose technique is unknown (not counted as 0).
        assert answer["trend"] == (
            "Technique, median of the last 4 weeks: 46 passes, spread 12% (1 session)"
        )

    run(tmp_path, body)


def test_the_live_view_carries_the_passes_of_the_state_snapshot() -> None:
    payload = {
        "v": 1,
        "ts": "2026-11-25T10:00:00.123Z",
        "state": "in_use",
        "zone": "ok",
        "force_n": 2.0,
        "sterile": False,
        "sterile_until": None,
        "uv_on": False,
        "lid_closed": False,
        "docked": False,
        "case": "open",
        "remaining_s": None,
        "session_no": 3,
        "roller_id": 1,
        "roller_uses": 3,
        "fault": None,
        "alarm": None,
        "silenced": False,
        "passes": 12,
        "pass_force_n": 1.87,
    }
    shown = snapshot_json(parse_state(json_object(json.dumps(payload).encode(), "state")))
    assert shown is not None and (shown["passes"], shown["pass_force_n"]) == (12, 1.87)


def _history(path: Path) -> None:
    """Session 1 ended idle at 5 s with its trace running on to 10 s (the timeout's tail);
    session 2 still open, with one over-pressure alarm at 6.2 N so far."""
    from dermaguard.common.timefmt import iso_utc
    from dermaguard.core.events import EmitEvent, Event, ForceSample
    from dermaguard.store import Store, StoreSink

    wall0 = 1_790_000_000.0
    now = [wall0]
    sink = StoreSink(Store.open(path, "dg-web"), lambda: now[0])

    def at(t: float, effect: Any) -> None:
        now[0] = wall0 + t
        sink(effect)

    def session_started(no: int, t: float) -> EmitEvent:
        data = {"session_no": no, "started_at": iso_utc(wall0 + t), "sterile": True,
                "roller_id": 1, "roller_use": no, "t_start": t}  # fmt: skip
        return EmitEvent(Event("session_started", t, data))

    at(0.0, session_started(1, 0.0))
    for i in range(100):
        at(i / 10, ForceSample(i / 10, 2.0 if i < 50 else 0.0, "ok" if i < 50 else "none"))
    summary = {"session_no": 1, "started_at": iso_utc(wall0), "ended_at": iso_utc(wall0 + 5),
               "duration_s": 5.0, "contact_s": 5.0, "peak_n": 2.0, "over_episodes": 0,
               "end_reason": "idle_timeout"}  # fmt: skip
    at(10.0, EmitEvent(Event("session_ended", 10.0, summary)))
    at(20.0, session_started(2, 20.0))
    for i in range(30):
        at(
            20 + i / 10,
            ForceSample(20 + i / 10, 6.0 if i >= 10 else 2.0, "over" if i >= 10 else "ok"),
        )
    at(21.0, EmitEvent(Event("over_pressure", 21.0, {"force_n": 6.2, "limit_n": 4.5})))
    assert sink.flush(10.0)
    assert sink.close()


def test_history_shows_a_running_session_so_far_and_a_trace_ends_with_its_session(
    tmp_path: Path,
) -> None:
    _history(tmp_path / "none.sqlite")

    async def body(client: TestClient[Any, Any]) -> None:
        client.session.cookie_jar.update_cookies({COOKIE: TOKEN})
        sessions = (await (await client.get("/api/history")).json())["sessions"]
        running, done = sessions
        assert running["session_no"] == 2 and running["in_progress"] is True
        assert running["over_episodes"] == 1 and running["peak_n"] >= 6.0
        assert running["duration_s"] is not None
        assert done["in_progress"] is None and done["over_episodes"] == 0
        trace = await (await client.get("/api/history/1/trace.svg")).text()
        assert ">5 s</text>" in trace and ">10 s</text>" not in trace

    run(tmp_path, body)

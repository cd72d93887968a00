"""``dermaguard web`` in a real browser (the distribution's headless Chromium), against a
simulated daemon and a real Mosquitto started by the test.

Screenshots of every screen at phone size (390 x 844) are written under the run's base
temporary directory, in ``artifacts/web/`` (the same place whichever pytest-xdist worker runs
them); ``pytest -rP`` shows the path.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from dermaguard.common.timefmt import iso_utc
from support import daemon
from support.broker import Broker, Received, RecorderFactory, publish
from support.web import WebServer, chromium

pytestmark = [pytest.mark.broker, pytest.mark.subprocess, pytest.mark.slow]

BASE = f"dermaguard/{daemon.DEVICE}"

# The roller in the hand, out of the dock, and never disinfected: a session opens at 2 N,
# one push over the 4.5 N limit for two seconds, then rolling at 2 N until the test ends it.
OVER_PRESSURE = """
name: web_over_pressure
description: one over-pressure episode, then a long ok session
duration_s: 600
initial: {lid: open, dock: out}
force:
  - {t: 0, n: 0}
  - {t: 1, n: 0}
  - {t: 2, n: 2.0}
  - {t: 4, n: 2.0}
  - {t: 4.5, n: 5.5}
  - {t: 6.5, n: 5.5}
  - {t: 7, n: 2.0}
  - {t: 600, n: 2.0}
"""

# Docked with the lid closed, no automatic start: a cycle starts only when asked to.
DOCKED = """
name: web_docked
description: docked in the closed case, waiting for a sterilize command
duration_s: 6000
config:
  case: {cycle_min: 1, auto_start: false}
initial: {lid: closed, dock: in}
force:
  - {t: 0, n: 0}
  - {t: 6000, n: 0}
"""


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # a worker's basetemp is popen-gwN inside the run's
    path = base / "artifacts" / "web"
    path.mkdir(parents=True, exist_ok=True)
    print(f"\nweb screenshots: {path}")
    return path


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    driver = chromium(tmp_path / "chromium-profile")
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def web_factory(tmp_path: Path) -> Iterator[Callable[[Broker], WebServer]]:
    made: list[WebServer] = []

    def make(broker: Broker) -> WebServer:
        server = WebServer(tmp_path / "state", broker.port)
        made.append(server)
        return server

    try:
        yield make
    finally:
        for server in made:
            server.close()


@pytest.fixture
def run_daemon(tmp_path: Path) -> Iterator[Callable[[str, Broker, float], subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(scenario: str, broker: Broker, speed: float) -> subprocess.Popen[str]:
        path = tmp_path / "scenario.yaml"
        path.write_text(scenario)
        proc = daemon.start(tmp_path / "state", path, port=broker.port, speed=speed)
        procs.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.communicate(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate()


def wait(driver: webdriver.Chrome, what: str, check: Callable[[], Any], timeout: float) -> Any:
    """Poll ``check`` every 20 ms until it is truthy; fail naming ``what``."""
    return WebDriverWait(driver, timeout, poll_frequency=0.02).until(
        lambda _d: check(), message=f"timed out after {timeout} s waiting for {what}"
    )


def by_id(driver: webdriver.Chrome, element_id: str) -> Any:
    return driver.find_element(By.ID, element_id)


def attr(driver: webdriver.Chrome, element_id: str, name: str) -> str:
    return str(by_id(driver, element_id).get_attribute(name) or "")


def visible_text(driver: webdriver.Chrome, element_id: str) -> str:
    element = by_id(driver, element_id)
    return str(element.text) if element.is_displayed() else ""


def sign_in(driver: webdriver.Chrome, web: WebServer) -> None:
    driver.get(f"{web.base}/?token={web.token}")
    wait(driver, "the dashboard", lambda: "/login" not in driver.current_url, 10)
    assert "token=" not in driver.current_url  # the token leaves the address bar at once


def screen(driver: webdriver.Chrome, name: str) -> None:
    driver.execute_script("location.hash = arguments[0]; window.scrollTo(0, 0);", name)
    wait(driver, f"the {name} screen", lambda: by_id(driver, f"screen-{name}").is_displayed(), 5)


def shot(driver: webdriver.Chrome, artifacts: Path, name: str) -> None:
    assert driver.save_screenshot(str(artifacts / f"{name}.png"))


def events_of(messages: list[Received], etype: str) -> list[Received]:
    return [m for m in messages if m.topic == f"{BASE}/event" and m.json()["type"] == etype]


def test_over_pressure_banner_ready_refusal_and_broker_outage(  # noqa: PLR0917
    broker: Broker,
    recorder_factory: RecorderFactory,
    web_factory: Callable[[Broker], WebServer],
    run_daemon: Callable[[str, Broker, float], subprocess.Popen[str]],
    browser: webdriver.Chrome,
    artifacts: Path,
) -> None:
    rec = recorder_factory(broker, [f"{BASE}/event", f"{BASE}/cmd/#"])
    web = web_factory(broker)

    # Without the token the page asks for it.
    browser.get(web.base + "/")
    wait(browser, "the sign-in page", lambda: "/login" in browser.current_url, 10)
    assert "access token" in browser.find_element(By.TAG_NAME, "body").text.lower()
    shot(browser, artifacts, "0-sign-in")

    sign_in(browser, web)
    screen(browser, "live")
    wait(browser, "the broker link", lambda: "no data" in visible_text(browser, "availability"), 10)

    proc = run_daemon(OVER_PRESSURE, broker, 1.0)
    got = rec.wait_for(lambda ms: bool(events_of(ms, "over_pressure")), 30, what="over_pressure")
    event_at = events_of(got, "over_pressure")[0].t
    wait(
        browser,
        "the alarm banner",
        lambda: attr(browser, "alarm", "data-alarm") == "over_pressure",
        5,
    )
    banner_at = time.monotonic()
    wait(
        browser, "the gauge in over", lambda: attr(browser, "force-zone", "data-zone") == "over", 2
    )
    gauge_at = time.monotonic()
    assert banner_at - event_at <= 1.0, f"banner {banner_at - event_at:.2f} s after the event"
    assert gauge_at - event_at <= 1.0, f"gauge {gauge_at - event_at:.2f} s after the event"
    banner = visible_text(browser, "alarm")
    assert "OVER-PRESSURE" in banner  # words, not colour alone
    shot(browser, artifacts, "2-live-over-pressure")

    got = rec.wait_for(lambda ms: bool(events_of(ms, "over_pressure_cleared")), 10)
    cleared_at = events_of(got, "over_pressure_cleared")[0].t
    wait(
        browser,
        "the banner to clear",
        lambda: attr(browser, "alarm", "data-alarm") != "over_pressure",
        5,
    )
    assert time.monotonic() - cleared_at <= 1.0
    wait(
        browser, "the gauge back in ok", lambda: attr(browser, "force-zone", "data-zone") == "ok", 2
    )

    # Ready to roll? A session is in progress, and it says how it started (never
    # disinfected), for which device and history.
    screen(browser, "ready")
    wait(browser, "the verdict", lambda: attr(browser, "verdict", "data-verdict") == "session", 5)
    assert visible_text(browser, "verdict-text") == "A session is in progress"
    cls, words = _reason(browser, "disinfected")
    assert cls == "no" and "session 1 started without disinfection" in words
    assert "→ after this session, put the roller in the case and close the lid" in words
    cls, words = _reason(browser, "rest")
    assert cls == "ok" and words.endswith("this session started after a full rest")
    assert visible_text(browser, "ready-about") == (
        f"Device {daemon.DEVICE}: no session in its history yet"
    )
    shot(browser, artifacts, "1-ready-session")

    # Sterilize with the lid open: refused, and the reason is shown.
    screen(browser, "controls")
    browser.find_element(By.CSS_SELECTOR, 'button[data-cmd="sterilize"]').click()
    wait(browser, "the refusal", lambda: "refused" in visible_text(browser, "result-sterilize"), 10)
    assert "lid is open" in visible_text(browser, "result-sterilize")
    shot(browser, artifacts, "3-controls-refused")

    # History during the session: in progress, with the over-pressure episode it already had.
    screen(browser, "history")
    rows = wait(browser, "the running session", lambda: _rows(browser), 10)
    cells = rows[0].find_elements(By.TAG_NAME, "td")
    assert "in progress" in cells[1].text and cells[2].text.startswith("so far ")
    assert cells[4].text == "1"
    shot(browser, artifacts, "7-history-in-progress")

    # Events read as words, in one 24-hour style; the header keeps the pill on one line.
    screen(browser, "live")
    # Read in one go: the list is redrawn whenever an event arrives.
    names, times, listed = browser.execute_script(
        "const q = (s) => [...document.querySelectorAll(s)].map((e) => e.textContent);"
        "const list = document.getElementById('events');"
        "return [q('#events .type'), q('#events time'), list.innerText];"
    )
    assert "Over-pressure" in names and not [n for n in names if "_" in n], names
    assert "refused: the lid is open" in listed and "lid_open" not in listed, listed
    assert times and all(re.fullmatch(r"\d\d:\d\d:\d\d", t) for t in times), times
    pill = browser.execute_script(
        "const p = document.getElementById('availability');"
        "return [p.getBoundingClientRect().height, parseFloat(getComputedStyle(p).fontSize)];"
    )
    assert pill[0] < 2.5 * pill[1], pill  # one line of text (and its padding), not two
    brand = "const b = document.querySelector('.brand'); return [b.scrollWidth, b.clientWidth];"
    shown, room = browser.execute_script(brand)
    assert shown <= room and visible_text(browser, "device") == daemon.DEVICE  # not cut off

    # The broker goes away: the device shows offline; it comes back: the page recovers.
    broker.stop()
    wait(browser, "offline", lambda: "OFFLINE" in visible_text(browser, "availability"), 15)
    assert "No connection to the MQTT broker" in visible_text(browser, "link-note")
    # The last known values are not a verdict: Cannot tell, as WEB.md says.
    screen(browser, "ready")
    wait(browser, "cannot tell", lambda: attr(browser, "verdict", "data-verdict") == "unknown", 5)
    assert visible_text(browser, "verdict-text") == "Cannot tell"
    assert _reason(browser, "disinfected")[0] == "unknown"
    assert "last known: session 1 started without" in _reason(browser, "disinfected")[1]
    screen(browser, "live")
    assert by_id(browser, "stale").is_displayed()
    shot(browser, artifacts, "4-live-broker-down")
    broker.start()
    wait(
        browser,
        "online again",
        lambda: visible_text(browser, "availability") == "device online",
        20,
    )
    assert not by_id(browser, "stale").is_displayed()

    # History: the daemon stops, the session is closed; its trace is drawn over the zones.
    proc.terminate()
    daemon.finish(proc, 30)
    screen(browser, "history")
    rows = wait(browser, "the session", lambda: _rows(browser), 10)
    assert rows[0].text.startswith("1 ")
    rows[0].click()
    wait(browser, "the trace", lambda: _loaded(browser, "trace"), 10)
    wait(browser, "the calendar", lambda: _loaded(browser, "calendar"), 10)
    browser.execute_script("window.scrollTo(0, 0)")
    shot(browser, artifacts, "7-history")
    browser.execute_script("document.getElementById('trace').scrollIntoView()")
    shot(browser, artifacts, "8-history-trace")


def test_sterilize_runs_a_cycle_with_a_countdown_and_then_ready_says_yes(  # noqa: PLR0917
    broker: Broker,
    recorder_factory: RecorderFactory,
    web_factory: Callable[[Broker], WebServer],
    run_daemon: Callable[[str, Broker, float], subprocess.Popen[str]],
    browser: webdriver.Chrome,
    artifacts: Path,
) -> None:
    rec = recorder_factory(broker, [f"{BASE}/event", f"{BASE}/cmd/#"])
    # The broker still holds another history's last session, a minute old (a reinstall, a new
    # SD card): this device has none, and its own rule is what the page follows.
    ended = datetime.now(UTC) - timedelta(minutes=1)
    publish(broker, f"{BASE}/session/last", _other_history(ended), retain=True)
    web = web_factory(broker)
    proc = run_daemon(DOCKED, broker, 10.0)
    sign_in(browser, web)

    screen(browser, "ready")
    wait(browser, "the device's state", lambda: _reason(browser, "disinfected")[0] == "no", 15)
    assert attr(browser, "verdict", "data-verdict") == "no"
    assert "press Disinfect to start a cycle" in _reason(browser, "disinfected")[1]

    screen(browser, "controls")
    browser.find_element(By.CSS_SELECTOR, 'button[data-cmd="sterilize"]').click()
    wait(browser, "the result", lambda: "done" in visible_text(browser, "result-sterilize"), 10)
    assert events_of(rec.messages(), "sterilization_started")

    # Ready? shows the running cycle's time left.
    screen(browser, "ready")
    wait(
        browser, "the cycle's time left", lambda: " left)" in _reason(browser, "disinfected")[1], 5
    )
    assert "a UV-C cycle is running (" in _reason(browser, "disinfected")[1]

    screen(browser, "live")
    first = wait(browser, "the countdown", lambda: _countdown(browser), 5)
    shot(browser, artifacts, "5-live-sterilizing")
    wait(browser, "the countdown to run", lambda: (_countdown(browser) or first) < first, 5)

    rec.wait_for(lambda ms: bool(events_of(ms, "sterilization_completed")), 30)
    screen(browser, "ready")
    wait(browser, "yes", lambda: attr(browser, "verdict", "data-verdict") == "yes", 10)
    assert _reason(browser, "disinfected")[1].startswith("✓ yes")
    cls, words = _reason(browser, "rest")
    assert cls == "ok" and words.endswith("no earlier session recorded")
    shot(browser, artifacts, "6-ready-yes")

    # The daemon stops: what it said last is no green yes any more.
    proc.terminate()
    daemon.finish(proc, 30)
    wait(browser, "cannot tell", lambda: attr(browser, "verdict", "data-verdict") == "unknown", 10)
    assert _reason(browser, "disinfected")[0] == "unknown"
    assert "last known: disinfected" in _reason(browser, "disinfected")[1]
    shot(browser, artifacts, "6-ready-daemon-stopped")

    # The same page on a desktop.
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False},
    )
    screen(browser, "live")
    shot(browser, artifacts, "9-desktop-live")


def _other_history(ended: datetime) -> dict[str, Any]:
    """A ``session/last`` of another device history, ended at ``ended``."""
    return {
        "v": 1, "session_no": 40, "started_at": iso_utc(ended.timestamp() - 120),
        "ended_at": iso_utc(ended.timestamp()), "duration_s": 120.0, "contact_s": 100.0,
        "zone_s": {"light": 0.0, "ok": 100.0, "high": 0.0, "over": 0.0}, "peak_n": 3.0,
        "mean_n": 2.0, "over_episodes": 0, "longest_over_s": 0.0, "sterile_at_start": True,
        "cycle_id": 3, "rest_interval_s": 90000.0, "too_soon": False, "roller_id": 1,
        "roller_use": 3, "end_reason": "docked",
    }  # fmt: skip


def _rows(driver: webdriver.Chrome) -> list[Any]:
    return list(driver.find_elements(By.CSS_SELECTOR, "#sessions tbody tr"))


def _loaded(driver: webdriver.Chrome, image_id: str) -> bool:
    script = "const i = document.getElementById(arguments[0]); return i.complete && i.naturalWidth"
    return bool(driver.execute_script(script, image_id))


def _reason(driver: webdriver.Chrome, key: str) -> tuple[str, str]:
    """One reason of the verdict: its class (ok, no, unknown) and its text, read in one go
    (the list is redrawn with every verdict)."""
    script = (
        'const li = document.querySelector(`#reasons li[data-key="${arguments[0]}"]`);'
        "return li ? [li.className, li.innerText] : ['', ''];"
    )
    found = driver.execute_script(script, key)
    return str(found[0]), str(found[1])


def _countdown(driver: webdriver.Chrome) -> int | None:
    """The countdown in seconds, or None while it does not show one."""
    text = visible_text(driver, "countdown")
    if not text.endswith(" left"):
        return None
    minutes, seconds = text.removesuffix(" left").split(":")
    return int(minutes) * 60 + int(seconds)


def test_forged_posts_get_403_and_reach_no_broker(
    broker: Broker,
    recorder_factory: RecorderFactory,
    web_factory: Callable[[Broker], WebServer],
) -> None:
    rec = recorder_factory(broker, f"{BASE}/cmd/#")
    web = web_factory(broker)
    path = "/api/cmd/sterilize"
    assert web.request(path, method="POST", origin=web.base)[0] == 403  # no cookie
    assert (
        web.request(path, method="POST", cookie=web.token, origin="http://evil.example")[0] == 403
    )
    assert web.request(path, method="POST", cookie=web.token)[0] == 403  # no Origin
    assert web.request(path, method="POST", cookie="x" * 32, origin=web.base)[0] == 403
    assert web.request("/api/view")[0] == 403
    # The one genuine request goes through, and it is the only command the broker saw.
    status, body = web.request(path, method="POST", cookie=web.token, origin=web.base)
    assert status == 200 and isinstance(body, dict) and "command" in body
    got = rec.wait_count(1, timeout=10)
    assert [m.topic for m in got] == [f"{BASE}/cmd/sterilize"]
    assert len(rec.messages()) == 1
    # Wrong tokens are rate-limited (the forged cookie above was the first of five allowed),
    # and the token never reaches the log.
    codes = [web.request(f"/?token=wrong{i:02d}wrongwrongwrong")[0] for i in range(6)]
    assert codes == [403, 403, 403, 403, 429, 429]
    assert web.token not in web.log()


def test_a_wrong_token_and_a_lockout_are_pages_that_say_what_to_do(
    broker: Broker,
    web_factory: Callable[[Broker], WebServer],
    browser: webdriver.Chrome,
    artifacts: Path,
) -> None:
    web = web_factory(broker)
    browser.get(f"{web.base}/?token=wrong-wrong-wrong-wrong")
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "That token is not right" in body and "dermaguard web --show-url" in body
    assert browser.find_element(By.ID, "token").is_displayed()  # and the token can be pasted
    shot(browser, artifacts, "0-sign-in-wrong-token")
    for i in range(4):
        browser.get(f"{web.base}/?token=wrong-wrong-wrong-{i:04d}")
    # Five wrong tries: even the right link waits, and the page says for how long.
    browser.get(f"{web.base}/?token={web.token}")
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Too many wrong tokens from this device. Try again in " in body, body
    seconds = int(body.split("Try again in ")[1].split(" seconds")[0])
    assert 1 <= seconds <= 60
    assert "/login" not in browser.current_url and "{" not in body  # a page, not JSON
    shot(browser, artifacts, "0-sign-in-locked-out")

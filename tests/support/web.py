"""``dermaguard web`` in a child process, and the distribution's headless Chromium to look at it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from support.daemon import env_for
from support.ports import free_port

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
APT_HINT = "sudo apt-get install -y chromium chromium-driver"
PHONE = (390, 844)


def _first(paths: tuple[str, ...], name: str) -> str:
    for p in paths:
        if Path(p).exists():
            return p
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is missing: install it with '{APT_HINT}' (tests/run does)")
    return found


class WebServer:
    """``python -m dermaguard web --simulate`` on a free loopback port, against ``mqtt_port``."""

    def __init__(self, state: Path, mqtt_port: int, config: Path | None = None) -> None:
        self.state = state
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "dermaguard"]
        args += ["web", "--simulate", "--mqtt", f"127.0.0.1:{mqtt_port}"]
        args += ["--listen", "127.0.0.1", "--port", str(self.port)]
        if config is not None:
            args += ["--config", str(config)]
        state.mkdir(parents=True, exist_ok=True)
        self.log_path = state / "web.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            args, stdout=self._log, stderr=subprocess.STDOUT, env=env_for(state)
        )
        self._wait_up()
        self.token = (state / "dermaguard" / "web-token").read_text().strip()

    def _wait_up(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"dermaguard web exited:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"dermaguard web did not answer in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def request(
        self,
        path: str,
        *,
        method: str = "GET",
        cookie: str | None = None,
        origin: str | None = None,
        data: bytes | None = None,
    ) -> tuple[int, dict[str, Any] | str]:
        req = urllib.request.Request(self.base + path, method=method, data=data)
        if cookie is not None:
            req.add_header("Cookie", f"dermaguard_token={cookie}")
        if origin is not None:
            req.add_header("Origin", origin)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                status, body = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read()
        text = body.decode("utf-8", "replace")
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def chromium(profile: Path, size: tuple[int, int] = PHONE) -> webdriver.Chrome:
    """Headless Chromium from the distribution, quiet on the network, at phone size."""
    options = webdriver.ChromeOptions()
    options.binary_location = _first(CHROMIUM, "chromium")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        f"--window-size={size[0]},{size[1]}",
    ):
        options.add_argument(flag)
    service = Service(executable_path=_first(CHROMEDRIVER, "chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    # Headless windows are at least 500 px wide: set the phone's viewport itself.
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": True},
    )
    return driver

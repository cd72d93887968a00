"""Interactive ``calibrate`` in a real terminal (tmux, 80 columns): the live reading updates on
its own line and never writes over the question being asked."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import daemon

pytestmark = pytest.mark.subprocess


class Terminal:
    """A detached tmux session on a private server, read as a person sees the screen."""

    def __init__(self, command: list[str], width: int = 80, height: int = 24) -> None:
        tmux = shutil.which("tmux")
        if tmux is None:
            pytest.fail("tmux is required (tests/run installs it)", pytrace=False)
        self.tmux = [tmux, "-L", f"dermaguard-test-{uuid.uuid4().hex[:8]}"]
        self._tmux("new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height),
                   shlex.join(command))  # fmt: skip

    def _tmux(self, *args: str) -> str:
        return subprocess.run(
            [*self.tmux, *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout

    def screen(self) -> list[str]:
        return self._tmux("capture-pane", "-p", "-t", "t").splitlines()

    def type(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "t", *keys)

    def wait_for(self, needle: str, what: str, count: int = 1) -> list[str]:
        """The screen once ``needle`` shows on ``count`` lines (polled: a screen has no events)."""
        seen: list[list[str]] = []

        def shown() -> bool:
            seen.append(self.screen())
            return sum(needle in line for line in seen[-1]) >= count

        try:
            daemon.wait_until(shown, 30, what)
        except AssertionError:
            raise AssertionError("\n".join(seen[-1] if seen else [])) from None
        return seen[-1]

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True, check=False, timeout=10)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    env = daemon.env_for(tmp_path)
    command = [
        "env",
        f"XDG_STATE_HOME={env['XDG_STATE_HOME']}",
        f"PYTHONPATH={env.get('PYTHONPATH', '')}",
        sys.executable,
        "-m",
        "dermaguard",
        "calibrate",
        "--simulate",
    ]
    term = Terminal(command)
    try:
        yield term
    finally:
        term.close()


def _prompt_line(screen: list[str], prompt: str) -> int:
    [index] = [i for i, line in enumerate(screen) if prompt in line]
    return index


def test_the_live_reading_never_overwrites_the_prompt(terminal: Terminal) -> None:
    first = "Press Enter when the reading is steady"
    terminal.wait_for("raw", "the first live reading")
    at = _prompt_line(terminal.wait_for(first, "the first prompt"), first)
    screen = terminal.screen()
    # The question starts its own line; the reading is on the line above it.
    assert screen[at].startswith(first), screen
    assert "raw" in screen[at - 1] and "counts" in screen[at - 1], screen
    terminal.type("Enter")

    mass = "Type its mass (e.g. 200g), or press Enter to finish:"
    screen = terminal.wait_for(mass, "the weight prompt")
    # The answered prompt stayed as it was: no reading was written over it after Enter.
    assert screen[_prompt_line(screen, first)].startswith(first), screen
    at = _prompt_line(screen, mass)
    assert screen[at].startswith(mass) and "raw" in screen[at - 1], screen
    terminal.type("200g", "Enter")

    # 200 g on an empty simulated roller is refused, and the question is asked again.
    screen = terminal.wait_for(mass, "the weight prompt again", count=2)
    # What was typed is still there, after the question, on the question's line.
    assert screen[_prompt_line(screen, mass + " 200g")].startswith(mass + " 200g"), screen

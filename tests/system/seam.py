"""The files only the system test installs in the guest: its test seam, in one place.

Everything else is what provisioning installs from the checkout. The seam is:

- ``dermaguard.service.d/system-test.conf`` and ``dermaguard-web.service.d/system-test.conf``:
  drop-ins that change ``ExecStart`` alone, to ``run --simulate`` with :func:`scenario` (and
  ``web --simulate``), because the VM has no HX711, no case switches and no GPIO. The unit's
  own user, groups, sandbox, ``Type=notify``, ``WatchdogSec`` and ``StateDirectory`` apply
  unchanged. The simulated daemon keeps its history in ``/var/lib/dermaguard/simulation`` and is
  the device ``<device_id>-sim`` on the broker.
- ``/etc/mosquitto/conf.d/system-test.conf``: a second listener (1884, every interface) so
  the subscriber outside the VM reaches the local broker through QEMU's forward; provisioning's
  own listener stays on the loopback.
- the agent (``guest_agent.py``) that the image has, and ``guest_check.py`` on the payload disk.
"""

from __future__ import annotations

SCENARIO_PATH = "/usr/local/lib/dermaguard-test/scenario.yaml"
CONFIG = "/etc/dermaguard/dermaguard.yaml"
VENV_BIN = "/opt/dermaguard/venv/bin"
STATE = "/var/lib/dermaguard/simulation"

DAEMON_DROPIN = f"""\
# dermaguard system test only (tests/system/seam.py): emulated hardware instead of the HX711,
# the case switches and the GPIO a VM does not have. Everything else is the unit's own.
[Service]
ExecStart=
ExecStart={VENV_BIN}/dermaguard run --simulate {SCENARIO_PATH} --config {CONFIG}
"""

WEB_DROPIN = f"""\
# dermaguard system test only (tests/system/seam.py): the dashboard of the simulated device.
[Service]
ExecStart=
ExecStart={VENV_BIN}/dermaguard web --simulate --config {CONFIG}
"""

BROKER_LISTENER = """\
# dermaguard system test only (tests/system/seam.py): reachable through QEMU's port forward.
listener 1884 0.0.0.0
"""

#: One round of the scenario, in seconds: rolling, then a UV-C cycle of the docked roller.
ROUND_S = 100
ROLL = (2.0, 30.0)
UV = (33.0, 94.0)


def scenario(rounds: int = 400) -> str:
    """Rounds of: a session of strokes (one push over the alarm threshold), docked, a 1-minute
    UV-C cycle, taken out again. Long enough that the daemon never reaches its end in a test."""
    case = []
    force = ["  - {t: 0, n: 0}"]
    for r in range(rounds):
        b = r * ROUND_S
        case += [
            f"  - {{t: {b + 1}, dock: out}}",
            f"  - {{t: {b + 31}, dock: in}}",
            f"  - {{t: {b + 32}, lid: closed}}",
            f"  - {{t: {b + 95}, lid: open}}",
        ]
        for k in range(6):
            s = b + 3 + 4 * k
            peak = 5.5 if k == 3 else 2.2
            force += [
                f"  - {{t: {s}, n: 0}}",
                f"  - {{t: {s + 1}, n: 1.6}}",
                f"  - {{t: {s + 2}, n: {peak}}}",
                f"  - {{t: {s + 3}, n: 0}}",
            ]
        force.append(f"  - {{t: {b + ROUND_S}, n: 0}}")
    return "\n".join(
        [
            "# dermaguard system test (tests/system/seam.py): rounds of rolling and UV-C cycles.",
            "name: system_test",
            "description: Rolling with one over-pressure push, docking, a 1-minute UV-C cycle.",
            f"duration_s: {rounds * ROUND_S}",
            "config:",
            "  case: {cycle_min: 1}",
            "initial: {lid: open, dock: in}",
            "case:",
            *case,
            "force:",
            *force,
            "",
        ]
    )

"""The files only the system test installs in the guest: its test seam, in one place.

Everything else is what provisioning installs from the checkout. The seam is:

- ``dermaguard.service.d/system-test.conf`` and ``dermaguard-web.service.d/system-test.conf``:
  drop-ins that change ``ExecStart`` alone, to ``run --simulate`` with :func:`scenario` (and
  ``web --simulate``), because the VM has no HX711, no case switches and no GPIO. The unit's
  own user, groups, sandbox, ``Type=notify``, ``WatchdogSec`` and ``StateDirectory`` apply
  unchanged. ``--system-clock`` keeps the device's clock handling: the simulation dates its
  records by the VM's clock and follows its synchronisation (a simulation otherwise keeps a
  calendar of its own, synchronised by definition, which step 5 could not test). The
  simulated daemon keeps its history in ``/var/lib/dermaguard/simulation`` and is the device
  ``<device_id>-sim`` on the broker.
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
ExecStart={VENV_BIN}/dermaguard run --simulate {SCENARIO_PATH} --system-clock --config {CONFIG}
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

SCENARIO_KINDS = ("rolling", "uv")
#: Scenario seconds before the first switch or push. The host's subscriber gets only what is
#: published after it subscribed, and after a boot it subscribes through QEMU's port forward
#: at its next retry once Mosquitto listens: a cycle whose lid closed at 1 s was once missed.
LEAD_S = 15


def scenario(kind: str) -> str:
    """What the emulated hardware does from the daemon's start: ``rolling`` (a session of
    strokes, one push over the alarm threshold, docked, then a 1-minute UV-C cycle) or ``uv``
    (the cycle first). Each boot starts the scenario again, so a power cut lands in the part
    the test chose for it, after ``LEAD_S`` of rest. The HX711 runs at 10 samples/s (RATE low):
    under emulation the host cannot keep 80 in lockstep."""
    strokes = []
    for k in range(6):
        s = LEAD_S + 3 + 4 * k
        peak = 5.5 if k == 3 else 2.2
        strokes += [(s, 0.0), (s + 1, 1.6), (s + 2, peak), (s + 3, 0.0)]
    if kind == "rolling":
        case = [(1, "dock: out"), (31, "dock: in"), (32, "lid: closed"), (95, "lid: open")]
        force = strokes
    elif kind == "uv":
        case = [(1, "lid: closed"), (64, "lid: open"), (65, "dock: out"), (95, "dock: in")]
        force = [(t + 64, n) for t, n in strokes]
    else:
        raise ValueError(f"scenario kind {kind!r}: one of {SCENARIO_KINDS}")
    case = [(LEAD_S + t, what) for t, what in case]
    return "\n".join(
        [
            f"# dermaguard system test (tests/system/seam.py): {kind} first.",
            f"name: system_test_{kind}",
            "description: Rolling with one over-pressure push, docking, a 1-minute UV-C cycle.",
            "duration_s: 100000",
            "config:",
            "  case: {cycle_min: 1}",
            "  hx711: {rate_sps: 10}",
            "initial: {lid: open, dock: in}",
            "case:",
            *(f"  - {{t: {t}, {what}}}" for t, what in case),
            "force:",
            "  - {t: 0, n: 0}",
            *(f"  - {{t: {t}, n: {n}}}" for t, n in force),
            f"  - {{t: {LEAD_S + 100}, n: 0}}",
            "",
        ]
    )

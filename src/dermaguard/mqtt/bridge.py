"""The MQTT side of the daemon: one thread between the engine, the event log and the broker.

Inputs arrive from four threads and only ever append to memory under one condition variable:

* the engine thread (effect sink): state snapshots and live force samples;
* the store's writer thread (``on_stored``): each event once it is committed;
* paho's network thread: connection changes, acknowledgements and commands;
* the daemon's main thread: ``drain`` and ``close`` at shutdown.

The bridge thread does all publishing, so a slow or dead broker can delay nothing but itself.
Commands are parsed on the network thread (cheap, never raising) and queued for the engine.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from dermaguard.core.events import Command, DeviceState, Effect, Event, EventType, ForceSample
from dermaguard.mqtt.client import make_client
from dermaguard.mqtt.commands import CommandParser
from dermaguard.mqtt.discovery import MODEL, discovery_payload
from dermaguard.mqtt.outbox import EventLog, Outbox, OutEvent, StoredRef
from dermaguard.mqtt.payloads import force_payload, session_last_payload, state_payload
from dermaguard.mqtt.settings import MqttSettings
from dermaguard.mqtt.topics import ONLINE

log = logging.getLogger(__name__)

#: Home Assistant announces itself before its MQTT integration is ready for discovery.
HA_REANNOUNCE_DELAY_S = 3.0
#: The bridge thread wakes at least this often (retries of refused events, housekeeping).
IDLE_WAKE_S = 1.0
#: After the client refused to take a publish (not a disconnect), wait this long (seconds).
PUBLISH_RETRY_S = 1.0
#: Acknowledgements wait at most this long (real seconds) to be taken in a batch.
ACK_HOLD_S = 0.02
#: A connection the broker drops within this many (real) seconds of accepting it, this many
#: times in a row, is most likely taken over by another client with the same client id (a
#: second device with this one's device_id, e.g. a copied SD card): said once, with the remedy.
SHORT_CONNECTION_S = 5.0
SHORT_CONNECTIONS_BEFORE_HINT = 3
_PUBLISH_OK = (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN)


class MqttBridge:
    """Publishes events (durably), state, live force and discovery; takes commands in.

    ``put_command`` queues a parsed command for the engine; ``mark_delivered`` records
    acknowledged events (the store's writer commits the marks). ``open_events`` opens the
    event log for reading; the bridge thread calls it once and closes what it returns. Call
    :meth:`start` once the store exists and :meth:`bind` has given both; :meth:`drain` then
    :meth:`close` at shutdown.
    """

    #: The effects it acts on (the runtime offers it no others).
    effect_types = (DeviceState, ForceSample)

    def __init__(
        self,
        settings: MqttSettings,
        *,
        open_events: Callable[[], EventLog],
        device_name: str,
        sw_version: str,
        model: str = MODEL,
        put_command: Callable[[Command], None] | None = None,
        mark_delivered: Callable[[Iterable[int]], None] | None = None,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        client: mqtt.Client | None = None,
        ack_hold_s: float = ACK_HOLD_S,
        real_monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.topics = settings.topics
        self._open_events = open_events
        self.device_name = device_name
        self.model = model
        self.sw_version = sw_version
        self._put_command = put_command or _nowhere
        self._mark_delivered = mark_delivered or _nowhere
        self._wall = wall
        self._monotonic = monotonic
        self.client = client if client is not None else make_client(settings)
        self.parser = CommandParser(self.topics, settings.commands_per_min)
        self._telemetry_period = 1.0 / settings.telemetry_hz
        self._cond = threading.Condition()
        # Guarded by _cond: inputs from other threads.
        self._fresh: deque[OutEvent] = deque()
        self._acks: deque[tuple[int, bool, str]] = deque()
        # Acknowledgements to gather before the bridge thread wakes for them alone, and when
        # the oldest waiting one came (real time): see _acks_due.
        self._ack_batch = 1
        self._acks_since = 0.0
        self._ack_hold_s = ack_hold_s
        # Real time, whatever clock the rest runs on: ack batching and connection lengths.
        self._real_monotonic = real_monotonic
        # Network thread only: when the connection came, how many in a row the broker dropped
        # soon after, and whether the likely reason was said.
        self._connected_since: float | None = None
        self._short_connections = 0
        self._clash_said = False
        self._state: bytes | None = None
        self._state_dirty = False
        self._device_state: DeviceState | None = None
        self._history_problem: str | None = None  # the history is unavailable: why
        self._force: bytes | None = None
        self._connected = False
        self._announce = False  # a new connection: birth, discovery, state
        self._discovery_due: float | None = None
        self._stopping = False
        self._idle = False  # the outbox had nothing left after the bridge's last step
        self._publish_retry_at = -float("inf")  # after the client refused a publish
        # Engine thread only.
        self._in_use = False
        self._last_force_t = -float("inf")
        # Bridge thread only.
        self.outbox: Outbox | None = None
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)
        self._failing: str | None = None  # the connection problem last reported
        self.connects = 0
        self._wire()

    def bind(
        self,
        *,
        put_command: Callable[[Command], None],
        mark_delivered: Callable[[Iterable[int]], None],
    ) -> None:
        """Where commands go and who records deliveries (both exist only after the bridge)."""
        self._put_command = put_command
        self._mark_delivered = mark_delivered

    # -- lifecycle (main thread) -------------------------------------------------------------

    def start(self) -> None:
        s = self.settings
        log.info("MQTT: connecting to %s as %s (MQTT %s)", s.address, s.client_id, s.version)
        self.client.connect_async(s.host, s.port, keepalive=s.keepalive_s)
        self.client.loop_start()
        self._thread.start()

    def drain(self, timeout: float) -> bool:
        """Wait until every stored event so far is acknowledged (``False`` on timeout).

        ``timeout`` is real time, whatever the clock the bridge was given: a stopping simulation
        no longer advances its virtual clock. A publisher thread that is not running cannot
        drain anything, so that is ``False`` at once rather than a wait for nothing.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._connected and not self._fresh and not self._acks and self._idle:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._cond.wait(min(remaining, 0.05))

    def close(self, timeout: float = 2.0) -> None:
        """Say ``offline`` (a clean disconnect sends no last will), then disconnect."""
        with self._cond:
            self._stopping = True
            connected = self._connected
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if connected:
            info = self.client.publish(self.topics.availability, "offline", qos=1, retain=True)
            # If the connection went meanwhile, the broker sends the will instead.
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout)
        self.client.disconnect()
        self.client.loop_stop()

    @property
    def connected(self) -> bool:
        return self._connected

    # -- engine thread -----------------------------------------------------------------------

    def __call__(self, effect: Effect) -> None:
        """Effect sink: only appends to memory (the engine thread never waits on the net)."""
        if isinstance(effect, DeviceState):
            self._in_use = effect.state == "in_use"
            with self._cond:
                self._device_state = effect
                self._state = state_payload(effect, history_problem=self._history_problem)
                self._state_dirty = True
                self._cond.notify()
        elif isinstance(effect, ForceSample):
            if not self._in_use or effect.t - self._last_force_t < self._telemetry_period * 0.95:
                return
            self._last_force_t = effect.t
            payload = force_payload(effect, self._wall())
            with self._cond:
                self._force = payload
                self._cond.notify()

    def set_history(self, problem: str | None) -> None:
        """The history became unavailable (``problem`` says why) or available again (``None``):
        the retained state says so at once (docs/MQTT.md, ``history``)."""
        with self._cond:
            self._history_problem = problem
            if self._device_state is not None:
                self._state = state_payload(self._device_state, history_problem=problem)
                self._state_dirty = True
                self._cond.notify()

    # -- writer thread -----------------------------------------------------------------------

    def on_stored(self, event: Event, stored: StoredRef) -> None:
        """The store committed ``event``: it may be published now."""
        out = OutEvent.build(
            seq=stored.seq,
            event_id=stored.id,
            device=self.topics.device_id,
            etype=event.type,
            ts=stored.ts,
            data=dict(event.data),
        )
        with self._cond:
            self._fresh.append(out)
            self._cond.notify()

    # -- paho network thread -----------------------------------------------------------------

    def _wire(self) -> None:
        c = self.client
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message

    def _on_connect(
        self, client: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any = None
    ) -> None:
        if rc.is_failure:
            self._report(
                f"the broker at {self.settings.address} refused the connection: {rc}"
                + (
                    " (check mqtt.username and the password)"
                    if rc.value in (0x86, 0x87, 4, 5)
                    else ""
                )
            )
            return
        client.subscribe(
            [(self.topics.cmd_filter, 1), (self.topics.ha_status, 1)]
            if self.settings.discovery
            else [(self.topics.cmd_filter, 1)]
        )
        if self._failing is not None:
            log.warning("MQTT: connected to %s again", self.settings.address)
        else:
            log.info("MQTT: connected to %s", self.settings.address)
        self._failing = None
        self._connected_since = self._real_monotonic()
        with self._cond:
            self.connects += 1
            self._connected = True
            self._announce = True
            self._cond.notify_all()

    def _on_connect_fail(self, _client: mqtt.Client, _u: Any) -> None:
        self._report(
            f"cannot reach the broker at {self.settings.address} "
            "(nothing listening, or the network is down)"
        )

    def _on_disconnect(
        self, _client: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any = None
    ) -> None:
        with self._cond:
            was, self._connected = self._connected, False
            stopping = self._stopping
            self._cond.notify_all()
        if was and not stopping:
            self._report(f"lost the connection to {self.settings.address} ({rc})")
            self._note_connection_length()

    def _note_connection_length(self) -> None:
        """Say once when the broker keeps dropping the connection right after accepting it."""
        since, self._connected_since = self._connected_since, None
        if since is None or self._real_monotonic() - since >= SHORT_CONNECTION_S:
            self._short_connections = 0
            return
        self._short_connections += 1
        if self._short_connections >= SHORT_CONNECTIONS_BEFORE_HINT and not self._clash_said:
            self._clash_said = True
            log.warning(
                "MQTT: the broker dropped the connection %d times in a row within %g s of "
                "accepting it: another client is probably connected with the same client id "
                "(%s), and the broker lets each take over from the other. Give each device its "
                "own device_id (or mqtt.client_id); two devices with one id also share their "
                "topics and history on the dashboards",
                self._short_connections,
                SHORT_CONNECTION_S,
                self.settings.client_id,
            )

    def _report(self, problem: str) -> None:
        """Say a connection problem once, not at every retry."""
        if problem != self._failing:
            self._failing = problem
            log.warning(
                "MQTT: %s; retrying. The alarm works without it, and events wait in the "
                "local history until the broker takes them",
                problem,
            )

    def _on_publish(
        self, _client: mqtt.Client, _u: Any, mid: int, rc: ReasonCode, _p: Any = None
    ) -> None:
        ok = not rc.is_failure
        with self._cond:
            if not self._acks:
                self._acks_since = self._real_monotonic()
            self._acks.append((mid, ok, "" if ok else str(rc)))
            if len(self._acks) >= self._ack_batch:
                self._cond.notify()

    def _on_message(self, _client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            if msg.topic == self.topics.ha_status:
                if msg.payload.strip().lower() == b"online":
                    with self._cond:
                        self._discovery_due = self._monotonic() + HA_REANNOUNCE_DELAY_S
                        self._cond.notify()
                return
            command = self.parser.parse(
                msg.topic, bytes(msg.payload), self._monotonic(), retained=bool(msg.retain)
            )
            if command is not None:
                self._put_command(command)
        except Exception:  # never let one message take the network thread down
            log.exception("MQTT: message on %s not handled", msg.topic[:200])

    # -- bridge thread -----------------------------------------------------------------------

    def _run(self) -> None:
        """The publisher. An error ends the thread through the thread exception hook, which
        the daemon's supervisor turns into a report and a restart (a fresh outbox reads the
        undelivered events back: nothing is lost, consumers de-duplicate by ``id``)."""
        opened: EventLog | None = None
        try:
            # Inside the try: one bad history must not end the thread unreported.
            reader = opened = self._open_events()
            self.outbox = Outbox(
                lambda after, limit: [
                    OutEvent.from_row(row) for row in reader.undelivered(after, limit)
                ],
                monotonic=self._monotonic,
            )
            while self._step():
                pass
        except Exception:
            log.exception("MQTT: publisher stopped by an internal error; it is restarted")
            raise
        finally:
            if opened is not None:
                opened.close()

    # -- supervision (main thread) ---------------------------------------------------------

    @property
    def alive(self) -> bool:
        """Whether the publisher thread runs (once started)."""
        return self._thread.is_alive() or self._stopping

    def restart(self) -> None:
        """Start the publisher again after it died."""
        with self._cond:
            if self._thread.is_alive() or self._stopping:
                return
            self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)
            self._thread.start()

    @property
    def network_alive(self) -> bool:
        """Whether paho's network thread runs. It runs with ``suppress_exceptions`` off, so an
        error in a callback ends it and reaches the supervisor instead of being only logged."""
        thread = getattr(self.client, "_thread", None)
        return self._stopping or (thread is not None and thread.is_alive())

    def restart_network(self) -> None:
        """Start paho's network loop again after its thread died."""
        if self._stopping:
            return
        self.client.loop_stop()
        self.client.loop_start()

    def _step(self) -> bool:
        outbox = self.outbox
        assert outbox is not None
        with self._cond:
            while not self._has_work(outbox):
                self._cond.wait(self._wait_s(outbox))
            if self._stopping:
                return False
            fresh, self._fresh = self._fresh, deque()
            acks, self._acks = self._acks, deque()
            if fresh:
                self._idle = False  # they are in no queue drain() can see until the step ends
            connected, announce = self._connected, self._announce
            self._announce = False
            state = self._state if (self._state_dirty or announce) else None
            self._state_dirty = False
            force, self._force = self._force, None
            rediscover = self._discovery_due is not None and (
                self._monotonic() >= self._discovery_due
            )
            if rediscover:
                self._discovery_due = None
        for event in fresh:
            outbox.offer(event)
        delivered = [e.seq for mid, ok, reason in acks if (e := outbox.acked(mid, ok, reason))]
        if delivered:
            self._mark_delivered(delivered)
        if connected:
            if announce:
                self._announce_device()
            elif rediscover and self.settings.discovery:
                self._publish_discovery()
            if state is not None:
                self.client.publish(self.topics.state, state, qos=1, retain=True)
            if force is not None:
                self.client.publish(self.topics.force, force, qos=0)
            outbox.fill(self._publish_event)
        with self._cond:
            # Set only here, after the delivery marks went to the store: drain() relies on it.
            self._idle = outbox.idle
            # While more than half the window waits for its PUBACK, the client has plenty to
            # send: take acknowledgements in batches rather than waking at each (a wake-up per
            # PUBACK, contending with paho's thread for its lock, halved a backlog's drain).
            self._ack_batch = max(1, len(outbox.inflight) - outbox.window // 2)
            self._cond.notify_all()
        return True

    def _acks_due(self) -> bool:
        """Whether the waiting acknowledgements are enough to act on: a batch, or any after a
        disconnect or once the oldest has waited ``ACK_HOLD_S``."""
        if not self._acks:
            return False
        return (
            len(self._acks) >= self._ack_batch
            or not self._connected
            or self._real_monotonic() - self._acks_since >= self._ack_hold_s
        )

    def _has_work(self, outbox: Outbox) -> bool:
        if self._stopping or self._fresh or self._acks_due() or self._force is not None:
            return True
        if self._state_dirty or self._announce:
            return True
        if self._discovery_due is not None and self._monotonic() >= self._discovery_due:
            return True
        retry = outbox.next_retry_in()
        if self._connected and retry is not None and retry <= 0.0:
            return True  # a refused event is due again
        # Something to hand over and room for it. Not "not outbox.idle": that stays true while
        # events only wait for their PUBACK, and this thread would spin until it came.
        if self._monotonic() < self._publish_retry_at:
            return False
        return self._connected and outbox.has_next and len(outbox.inflight) < outbox.window

    def _wait_s(self, outbox: Outbox) -> float:
        waits = [IDLE_WAKE_S]
        if self._acks:
            waits.append(self._acks_since + self._ack_hold_s - self._real_monotonic())
        if self._publish_retry_at > self._monotonic():
            waits.append(self._publish_retry_at - self._monotonic())
        retry = outbox.next_retry_in()
        if retry is not None and self._connected:  # offline, a connect wakes the thread
            waits.append(retry)
        if self._discovery_due is not None:
            waits.append(max(0.0, self._discovery_due - self._monotonic()))
        return max(0.001, min(waits))

    def _announce_device(self) -> None:
        self.client.publish(self.topics.availability, ONLINE, qos=1, retain=True)
        if self.settings.discovery:
            self._publish_discovery()

    def _publish_discovery(self) -> None:
        payload = discovery_payload(
            self.topics, device_name=self.device_name, sw_version=self.sw_version, model=self.model
        )
        self.client.publish(self.topics.discovery, payload, qos=1, retain=True)

    def _publish_event(self, event: OutEvent) -> int | None:
        info = self.client.publish(self.topics.event, event.payload, qos=1)
        if info.rc not in _PUBLISH_OK:
            # Back off: trying again at once would spin this thread until the client recovers.
            self._publish_retry_at = self._monotonic() + PUBLISH_RETRY_S
            log.warning("MQTT: event %d not handed to the client: %s", event.seq, info.rc)
            return None
        if event.etype == EventType.SESSION_ENDED and event.data is not None:
            self.client.publish(
                self.topics.session_last, session_last_payload(event.data), qos=1, retain=True
            )
        return info.mid


def _nowhere(_item: object) -> None:
    raise RuntimeError("MqttBridge.bind() was not called")

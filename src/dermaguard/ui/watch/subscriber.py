"""The MQTT shell of ``dermaguard watch``: the connection loop, and the command's entry.

A subscriber that never publishes (no will, no birth, its own random client id so it can never
take the device's session over). paho's thread only queues what arrives; the caller's thread
feeds the queue to a :class:`WatchModel` and draws frames, live or once (``--once``).
"""

from __future__ import annotations

import queue
import secrets
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from dermaguard.config.load import ZonesConfig
from dermaguard.mqtt.client import RECONNECT_MAX_S, connection_client
from dermaguard.mqtt.link import LinkState
from dermaguard.mqtt.settings import MqttSettings
from dermaguard.mqtt.topics import Topics
from dermaguard.ui.watch.model import LinkStatus, WatchModel
from dermaguard.ui.watch.view import FRAMES_PER_S, render

#: After the state arrives in ``--once`` mode, wait this long for the other retained topics.
ONCE_GRACE_S: Final = 0.3


class WatchError(Exception):
    """The watch cannot go on (broker unreachable or refusing, in ``--once`` mode)."""


class BrokerUnreachable(WatchError):
    """No broker answered: the machine's or the network's state, not a mistake in the call."""


@dataclass(frozen=True, slots=True)
class _Message:
    topic: str
    payload: bytes
    t: float


@dataclass(frozen=True, slots=True)
class _Link:
    status: LinkStatus
    detail: str | None = None


_Inbox = queue.SimpleQueue[_Message | _Link]


def watch_topics(topics: Topics) -> list[tuple[str, int]]:
    """The subscriptions, the state last: a broker sends retained messages in the order of
    the filters, so by the time the state arrives the other retained topics have too."""
    return [
        (topics.availability, 1),
        (topics.session_last, 1),
        (topics.event, 1),
        (topics.force, 0),
        (topics.state, 1),
    ]


def subscriber_client(settings: MqttSettings, client_id: str | None = None) -> mqtt.Client:
    """A paho client with the device's credentials and TLS but none of its identity.

    Unlike :func:`dermaguard.mqtt.client.make_client` it sets no last will (the watcher must
    never write the device's availability), uses a random client id (the device's id would
    disconnect the device) and a clean session that ends with the connection.
    """
    return connection_client(settings, client_id or f"dermaguard-watch-{secrets.token_hex(4)}")


class _Subscriber:
    """Connects (retrying, with the reason of each failure), subscribes, forwards to a queue.

    The first connection is made here rather than by paho's loop, because paho's retry loop
    does not say *why* a connection failed and a person needs to see "connection refused" or
    "name not known". Once connected, paho's loop reconnects by itself.
    """

    def __init__(self, settings: MqttSettings, inbox: _Inbox, connect_timeout: float) -> None:
        self.settings = settings
        self.inbox = inbox
        self.client = subscriber_client(settings)
        self.client.connect_timeout = connect_timeout
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._looping = False
        # paho calls back on one thread: the CONNACK, then the broker closing the socket.
        self._link = LinkState()
        self._thread = threading.Thread(target=self._connect, name="watch-connect", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _connect(self) -> None:
        s = self.settings
        delay = 0.5
        while not self._stopping.is_set():
            try:
                if s.version == "5":
                    self.client.connect(s.host, s.port, s.keepalive_s, clean_start=True)
                else:
                    self.client.connect(s.host, s.port, s.keepalive_s)
            except (OSError, ValueError) as exc:
                self.inbox.put(_Link("connecting", _os_reason(exc)))
                self._stopping.wait(delay)
                delay = min(delay * 2, float(RECONNECT_MAX_S))
                continue
            with self._lock:
                if not self._stopping.is_set():
                    self.client.loop_start()
                    self._looping = True
            return

    def stop(self) -> None:
        self._link.close()
        with self._lock:
            self._stopping.set()
            looping = self._looping
        if looping:
            self.client.disconnect()
            self.client.loop_stop()

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        status, detail = self._link.connected(reason_code)
        if status == "connected":
            client.subscribe(watch_topics(self.settings.topics))
        self.inbox.put(_Link(status, detail))

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        change = self._link.disconnected(reason_code)
        if change is not None:
            self.inbox.put(_Link(*change))

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.inbox.put(_Message(msg.topic, bytes(msg.payload), time.monotonic()))


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower() if exc.strerror[:1].isupper() else exc.strerror
    return str(exc) or type(exc).__name__


def _drain(inbox: _Inbox, model: WatchModel, wait_s: float) -> None:
    """Apply everything queued, waiting up to ``wait_s`` for the first item."""
    items: list[_Message | _Link] = []
    try:
        items.append(inbox.get(timeout=max(0.0, wait_s)))
        while True:
            items.append(inbox.get_nowait())
    except queue.Empty:
        pass
    for item in items:
        if isinstance(item, _Message):
            model.ingest(item.topic, item.payload, item.t)
        else:
            model.set_link(item.status, item.detail)


def watch(
    settings: MqttSettings,
    zones: ZonesConfig,
    *,
    once: bool = False,
    timeout: float = 5.0,
    console: Console | None = None,
) -> int:
    """Run the view until Ctrl-C (0), or with ``once`` print one frame and return.

    ``once``: 0 when the state arrived, 1 when connected but no state arrived in ``timeout``;
    :class:`WatchError` when the broker could not be reached or refused the connection.
    """
    console = console or Console()
    inbox: _Inbox = queue.SimpleQueue()
    model = WatchModel(settings.topics, zones=zones, address=settings.address)
    sub = _Subscriber(settings, inbox, connect_timeout=min(5.0, max(1.0, timeout)))
    # SIGTERM ends the view like Ctrl-C, so the terminal gets its cursor back.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main else None
    sub.start()
    try:
        if once:
            return _once(model, inbox, timeout, console)
        _live(model, inbox, console)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        sub.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _once(model: WatchModel, inbox: _Inbox, timeout: float, console: Console) -> int:
    deadline = time.monotonic() + timeout
    done_at: float | None = None
    while True:
        now = time.monotonic()
        if model.link == "refused":
            raise WatchError(
                f"the MQTT broker at {model.address} refused the connection: {model.link_detail}"
            )
        if done_at is None and model.snapshot is not None:
            done_at = now + ONCE_GRACE_S
        end = done_at if done_at is not None else deadline
        if now >= end:
            break
        _drain(inbox, model, min(end - now, 0.1))
    if not model.ever_connected:
        reason = f": {model.link_detail}" if model.link_detail else ""
        raise BrokerUnreachable(
            f"cannot reach the MQTT broker at {model.address} within {timeout:g} s{reason}"
        )
    console.print(render(model, time.monotonic(), once=True))
    if model.snapshot is None:
        print(
            f"dermaguard: no state on {model.topics.state} within {timeout:g} s "
            "(is the device running, and is --device right?)",
            file=sys.stderr,
        )
        return 1
    return 0


def _live(model: WatchModel, inbox: _Inbox, console: Console) -> None:
    period = 1.0 / FRAMES_PER_S
    with Live(
        _with_hint(render(model, time.monotonic())),
        console=console,
        auto_refresh=False,
        redirect_stdout=False,
        redirect_stderr=False,
    ) as live:
        next_frame = time.monotonic()
        while True:
            _drain(inbox, model, next_frame - time.monotonic())
            now = time.monotonic()
            if now >= next_frame:
                live.update(_with_hint(render(model, now)), refresh=True)
                next_frame = now + period


def _with_hint(frame: RenderableType) -> RenderableType:
    return Group(frame, Text("read-only view · Ctrl-C to quit", style="dim"))

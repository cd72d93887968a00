"""The dashboard's link to the broker: one subscriber, one model, many browsers.

Messages arrive on paho's thread and are handed to the event loop, decoded there by the
:class:`~dermaguard.ui.watch.model.WatchModel` (the shared decoder, checked against the
schemas) and fanned out to every connected browser as server-sent events. Each browser has a
small queue; one that falls behind loses force samples, never the others' or the broker's time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from dermaguard.config.load import ZonesConfig
from dermaguard.core.events import CommandName, EventType
from dermaguard.core.words import EVENT_NAMES
from dermaguard.mqtt.decode import EventLine, Snapshot
from dermaguard.mqtt.link import LinkState
from dermaguard.mqtt.settings import MqttSettings
from dermaguard.mqtt.topics import COMMANDS, Topics
from dermaguard.ui.watch.model import WatchModel
from dermaguard.ui.watch.subscriber import subscriber_client, watch_topics

log = logging.getLogger(__name__)

#: Messages queued per browser before the oldest live force samples are dropped.
CLIENT_QUEUE: Final = 64
#: How long a POSTed command waits for its ``command_result`` before answering "sent".
RESULT_WAIT_S: Final = 5.0
#: Browser-facing commands (``ping`` is for machines).
WEB_COMMANDS: Final = tuple(c for c in COMMANDS if c != CommandName.PING)


#: The daemon's refusal codes, as a person reads them on the Controls screen.
_REFUSALS: Final = {
    "already_sterilizing": "a UV-C cycle is already running",
    "lid_open": "the lid is open: put the roller in the dock and close the lid",
    "roller_not_docked": "the roller is not in the dock: put it in and close the lid",
}


def refusal_words(error: str) -> str:
    """A refusal code in words (errors already written as sentences pass through)."""
    if error in _REFUSALS:
        return _REFUSALS[error]
    if error.startswith("fault:"):
        return f"the case has a fault ({error[6:]}): see the device's log"
    return error


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def snapshot_json(s: Snapshot | None) -> dict[str, Any] | None:
    if s is None:
        return None
    return {
        "ts": _iso(s.ts),
        "state": s.state,
        "zone": s.zone,
        "force_n": s.force_n,
        "sterile": s.sterile,
        "sterile_until": _iso(s.sterile_until),
        "uv_on": s.uv_on,
        "lid_closed": s.lid_closed,
        "docked": s.docked,
        "case": s.case,
        "remaining_s": s.remaining_s,
        "session_no": s.session_no,
        "roller_id": s.roller_id,
        "roller_uses": s.roller_uses,
        "fault": s.fault,
        "alarm": s.alarm,
        "silenced": s.silenced,
        "thread_failures": s.thread_failures,
        "history_problem": s.history_problem,
        "passes": s.passes,
        "pass_force_n": s.pass_force_n,
    }


def event_json(e: EventLine) -> dict[str, Any]:
    summary = e.summary
    error = e.data.get("error")
    if e.type == EventType.COMMAND_RESULT and isinstance(error, str):
        # A refusal code (lid_open) in the words the Controls screen uses for it.
        summary = f"command {e.data.get('command')}: refused: {refusal_words(error)}"
    return {
        "id": e.id,
        "type": e.type,
        "name": EVENT_NAMES.get(e.type, e.type.replace("_", " ")),
        "ts": _iso(e.ts),
        "summary": summary,
        "data": e.data,
    }


@dataclass(eq=False)
class Client:
    """One browser's stream."""

    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(CLIENT_QUEUE))
    dropped: int = 0

    def offer(self, frame: str, *, droppable: bool) -> None:
        if self.queue.full():
            if droppable:
                self.dropped += 1
                return
            self.queue.get_nowait()  # a slow browser loses the oldest frame, not the state
        self.queue.put_nowait(frame)


class Hub:
    """The model of the device and the browsers watching it; runs on the event loop."""

    def __init__(self, settings: MqttSettings, zones: ZonesConfig) -> None:
        self.settings = settings
        self.topics: Topics = settings.topics
        self.model = WatchModel(self.topics, zones=zones, address=settings.address)
        self.clients: set[Client] = set()
        self.link = "connecting"
        self.link_detail: str | None = None
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None
        self._link = LinkState()

    # --- the view the browsers get ------------------------------------------------------

    def view(self) -> dict[str, Any]:
        m = self.model
        now = time.monotonic()
        reading = m.reading
        return {
            "device": self.topics.device_id,
            "link": self.link,
            "link_detail": self.link_detail,
            "availability": m.availability,
            "state": snapshot_json(m.snapshot),
            "remaining_s": m.remaining_s(now),
            "sterile_left_s": m.sterile_left_s(now),
            "force": None
            if reading is None
            else {
                "force_n": reading.force_n,
                "zone": reading.zone,
                "age_s": now - reading.received,
            },
            "events": [event_json(e) for e in m.events],
            "malformed": m.malformed,
            "zones": {
                "contact_n": m.zones.contact_n,
                "ok_n": m.zones.ok_n,
                "high_n": m.zones.high_n,
                "over_n": m.zones.over_n,
            },
        }

    def _broadcast(self, kind: str, data: dict[str, Any], *, droppable: bool = False) -> None:
        frame = f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
        for c in self.clients:
            c.offer(frame, droppable=droppable)

    def subscribe(self) -> Client:
        client = Client()
        self.clients.add(client)
        client.offer(self.view_frame(), droppable=False)
        return client

    def view_frame(self) -> str:
        return f"event: view\ndata: {json.dumps(self.view(), separators=(',', ':'))}\n\n"

    def unsubscribe(self, client: Client) -> None:
        self.clients.discard(client)

    # --- what arrives -------------------------------------------------------------------

    def _on_message_loop(self, topic: str, payload: bytes, received: float) -> None:
        m = self.model
        before = len(m.events)
        newest = m.events[0].id if m.events else None
        if not m.ingest(topic, payload, received):
            return
        if topic == self.topics.force and m.reading is not None:
            r = m.reading
            sample = {"force_n": r.force_n, "zone": r.zone, "t": r.t}
            self._broadcast("force", sample, droppable=True)
            return
        if (
            topic == self.topics.event
            and m.events
            and (len(m.events) != before or m.events[0].id != newest)
        ):
            line = m.events[0]
            if line.type == EventType.COMMAND_RESULT:
                rid = line.data.get("request_id")
                future = self._waiting.pop(rid, None) if isinstance(rid, str) else None
                if future is not None and not future.done():
                    result = dict(line.data)
                    if isinstance(result.get("error"), str):
                        result["error"] = refusal_words(result["error"])
                    future.set_result(result)
        self._broadcast("view", self.view())

    def _on_link_loop(self, status: str, detail: str | None) -> None:
        if status != self.link:
            address, why = self.settings.address, f" ({detail})" if detail else ""
            if status == "connected":
                log.info("connected to the broker at %s", address)
            elif status == "refused":
                log.warning("the broker at %s refused the connection%s", address, why)
            else:
                log.warning("no connection to the broker at %s%s; retrying", address, why)
        self.link, self.link_detail = status, detail
        self.model.set_link("connected" if status == "connected" else "lost", detail)
        self._broadcast("view", self.view())

    # --- the MQTT side ------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Connect in the background; paho retries until the broker is there."""
        self._loop = loop
        s = self.settings
        client = subscriber_client(s, f"dermaguard-web-{secrets.token_hex(4)}")
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_message = self._on_message
        self._client = client
        if s.version == "5":
            client.connect_async(s.host, s.port, s.keepalive_s, clean_start=True)
        else:
            client.connect_async(s.host, s.port, s.keepalive_s)
        client.loop_start()

    def stop(self) -> None:
        self._link.close()
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()

    def _call(self, fn: Any, *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(fn, *args)

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
            client.subscribe(watch_topics(self.topics))
        self._call(self._on_link_loop, status, detail)

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
            self._call(self._on_link_loop, *change)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._call(self._on_link_loop, "lost", "cannot reach the broker")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._call(self._on_message_loop, msg.topic, bytes(msg.payload), time.monotonic())

    # --- commands -----------------------------------------------------------------------

    async def command(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """Publish ``name`` and wait for its ``command_result`` (or say it was only sent)."""
        if self.link != "connected" or self._client is None:
            return {"command": name, "ok": False, "error": "no connection to the MQTT broker"}
        rid = f"web-{secrets.token_hex(6)}"
        assert self._loop is not None
        future: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        self._waiting[rid] = future
        payload = json.dumps({**args, "request_id": rid}).encode()
        info = self._client.publish(self.topics.cmd(name), payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self._waiting.pop(rid, None)
            return {"command": name, "ok": False, "error": "the broker did not take the command"}
        try:
            return await asyncio.wait_for(future, RESULT_WAIT_S)
        except TimeoutError:
            self._waiting.pop(rid, None)
            return {
                "command": name,
                "ok": None,
                "error": f"sent, but the device did not answer within {RESULT_WAIT_S:g} s "
                "(is it running?)",
            }

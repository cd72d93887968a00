"""A real Mosquitto broker for the MQTT tests, and paho-mqtt clients that observe it.

``Broker`` owns one ``mosquitto`` process with its own config, log, password file, ACL and
persistence database in a work directory. The port is chosen once, on a free loopback port,
and kept across restarts, so clients can reconnect to the same address. ``start`` returns
only when the broker logged that it is running *and* accepts a TCP connection.

``Recorder`` is an independent MQTT v5 subscriber with a persistent session: the broker queues
what is published while it is away (stopped, killed, restarted, or the recorder closed) and
delivers it when it reconnects. It records every message in arrival order and lets a test
wait for a condition on what arrived.

``Publisher``/``publish``, ``try_connect`` and ``fetch_retained`` are one-shot clients for
the test side: publish and wait for the broker's acknowledgement (with its reason code),
see what CONNACK a given login gets, read the retained messages under a filter.

Nothing here sleeps for a fixed time: every wait polls or waits on a real condition, with a
timeout that fails the test with a summary of what was seen.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import hashlib
import json as jsonlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from support.ports import free_port

__all__ = [
    "MOSQUITTO_MISSING",
    "Broker",
    "BrokerError",
    "BrokerFactory",
    "Endpoint",
    "MosquittoNotFound",
    "PublishOutcome",
    "Publisher",
    "Received",
    "Recorder",
    "RecorderFactory",
    "fetch_retained",
    "find_mosquitto",
    "find_mosquitto_passwd",
    "mosquitto_password_hash",
    "publish",
    "try_connect",
    "write_password_file",
]

MOSQUITTO_MISSING = (
    "the MQTT tests need the mosquitto broker: install it with 'sudo apt install mosquitto'"
)

LOOPBACK = "127.0.0.1"

_MOSQUITTO_PLACES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
_PASSWD_PLACES = ("/usr/bin/mosquitto_passwd", "/usr/local/bin/mosquitto_passwd")

# Mosquitto 2.x password hash: "$7$<iterations>$<b64 salt>$<b64 PBKDF2-HMAC-SHA512>"; this is
# what mosquitto_passwd 2.0 writes by default (12-byte salt, 101 iterations, 64-byte key).
_PBKDF2_ITERATIONS = 101
_PBKDF2_SALT_BYTES = 12


class MosquittoNotFound(RuntimeError):
    """The mosquitto binary is not installed; the message says how to install it."""


class BrokerError(RuntimeError):
    """The broker process did not start or stop as asked (message includes its log tail)."""


def find_mosquitto() -> str:
    """Path of the mosquitto binary; ``MosquittoNotFound`` (never a skip) if it is missing."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for place in _MOSQUITTO_PLACES:
        if os.access(place, os.X_OK):
            return place
    raise MosquittoNotFound(MOSQUITTO_MISSING)


def find_mosquitto_passwd() -> str | None:
    """Path of ``mosquitto_passwd``, or None (the Python hash writer is used instead)."""
    found = shutil.which("mosquitto_passwd")
    if found:
        return found
    for place in _PASSWD_PLACES:
        if os.access(place, os.X_OK):
            return place
    return None


def mosquitto_password_hash(
    password: str, *, salt: bytes | None = None, iterations: int = _PBKDF2_ITERATIONS
) -> str:
    """The password-file hash Mosquitto 2.x accepts (``$7$`` = PBKDF2-HMAC-SHA512)."""
    salt = os.urandom(_PBKDF2_SALT_BYTES) if salt is None else salt
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    b64 = base64.b64encode
    return f"$7${iterations}${b64(salt).decode()}${b64(key).decode()}"


def write_password_file(path: Path, users: Mapping[str, str], *, use_tool: bool = True) -> str:
    """Write a Mosquitto password file for ``users``; returns the method used.

    With ``use_tool`` and ``mosquitto_passwd`` installed the tool writes it
    (``"mosquitto_passwd"``); otherwise the hashes are computed here (``"python"``).
    """
    for name in users:
        if not name or ":" in name or any(c.isspace() for c in name):
            raise ValueError(f"bad MQTT user name for a password file: {name!r}")
    tool = find_mosquitto_passwd() if use_tool else None
    path.unlink(missing_ok=True)
    if tool is None:
        lines = [f"{name}:{mosquitto_password_hash(pw)}\n" for name, pw in users.items()]
        path.write_text("".join(lines), encoding="utf-8")
        path.chmod(0o600)
        return "python"
    for i, (name, pw) in enumerate(users.items()):
        create = ["-c"] if i == 0 else []
        subprocess.run(
            [tool, "-b", *create, str(path), name, pw],
            check=True,
            capture_output=True,
            timeout=30,
        )
    return "mosquitto_passwd"


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


class Endpoint(Protocol):
    """Where a client connects: a ``Broker`` or anything with ``host`` and ``port``."""

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...


class BrokerFactory(Protocol):
    """The ``broker_factory`` fixture: ``Broker`` options, started unless ``start=False``."""

    def __call__(
        self,
        *,
        users: Mapping[str, str] | None = None,
        acl: str | None = None,
        persistence: bool = True,
        start: bool = True,
        **kwargs: Any,
    ) -> Broker: ...


class RecorderFactory(Protocol):
    """The ``recorder_factory`` fixture: ``Recorder(broker, topics, **kwargs)``."""

    def __call__(
        self, broker: Endpoint, topics: str | Sequence[str], **kwargs: Any
    ) -> Recorder: ...


_LIVE_BROKERS: weakref.WeakSet[Broker] = weakref.WeakSet()


@atexit.register
def _kill_leftover_brokers() -> None:  # pragma: no cover - only on an aborted run
    for b in list(_LIVE_BROKERS):
        with contextlib.suppress(Exception):
            b.kill()


class _ClosedOnExit:
    """``with`` support for the harness's objects: ``__exit__`` calls ``close()``."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Broker(_ClosedOnExit):
    """One mosquitto process the tests own, configured in ``workdir``.

    The port is picked at construction and kept across ``restart``. ``stop`` (SIGTERM) makes
    mosquitto write its persistence database, so persistent sessions, their queued messages
    and retained messages survive a restart; ``kill`` (SIGKILL) loses everything since the
    last save (autosave is effectively off, so: everything since the last ``stop``).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        users: Mapping[str, str] | None = None,
        acl: str | None = None,
        persistence: bool = True,
        verbose_log: bool = False,
        password_tool: bool = True,
        extra_conf: str = "",
        binary: str | None = None,
    ) -> None:
        self._binary = binary or find_mosquitto()
        self.workdir = Path(workdir).resolve()
        if any(c.isspace() for c in str(self.workdir)):
            raise ValueError(f"mosquitto.conf cannot hold paths with spaces: {self.workdir}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._port = free_port()
        self.users = dict(users) if users is not None else None
        self.conf_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self.output_path = self.workdir / "mosquitto.out"
        self.db_path = self.workdir / "mosquitto.db"
        self.password_path: Path | None = None
        self.acl_path: Path | None = None
        self.password_method: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

        conf = [
            f"listener {self._port} {LOOPBACK}",
            "allow_anonymous " + ("false" if users is not None else "true"),
        ]
        if os.geteuid() == 0:
            # As root mosquitto drops to the "mosquitto" user, which cannot write the
            # test's private work directory; stay the current user instead.
            conf.append(f"user {pwd.getpwuid(os.geteuid()).pw_name}")
        if users is not None:
            self.password_path = self.workdir / "passwords"
            self.password_method = write_password_file(
                self.password_path, users, use_tool=password_tool
            )
            conf.append(f"password_file {self.password_path}")
        if acl is not None:
            self.acl_path = self.workdir / "acl"
            self.acl_path.write_text(acl if acl.endswith("\n") else acl + "\n", encoding="utf-8")
            conf.append(f"acl_file {self.acl_path}")
        if persistence:
            conf += [
                "persistence true",
                f"persistence_location {self.workdir}/",
                "persistence_file mosquitto.db",
                # Saved on SIGTERM; never by the clock during a test.
                "autosave_interval 86400",
            ]
        else:
            conf.append("persistence false")
        conf += [
            f"log_dest file {self.log_path}",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            *(
                ["log_type all"]
                if verbose_log
                else [f"log_type {t}" for t in ("error", "warning", "notice", "information")]
                + ["log_type subscribe", "log_type unsubscribe"]
            ),
            # Queue plenty for a persistent-session subscriber that is away (default 1000).
            "max_queued_messages 100000",
            "max_queued_bytes 0",
            # 0 = no limit on QoS 1/2 messages in flight to one client (default 20).
            "max_inflight_messages 0",
            "set_tcp_nodelay true",
        ]
        if extra_conf:
            conf.append(extra_conf.rstrip("\n"))
        self.conf_path.write_text("\n".join(conf) + "\n", encoding="utf-8")

    # -- address ------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def port(self) -> int:
        return self._port

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> Self:
        """Start mosquitto and wait until it is running and accepts TCP on its port."""
        with self._lock:
            if self.running:
                raise BrokerError(f"broker on port {self._port} is already running")
            log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            with self.output_path.open("ab") as out:
                self._proc = subprocess.Popen(
                    [self._binary, "-c", str(self.conf_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=self.workdir,
                    start_new_session=True,  # a Ctrl-C in pytest is for pytest, not for it
                )
            _LIVE_BROKERS.add(self)
            proc = self._proc
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise BrokerError(
                    f"mosquitto exited with {proc.returncode} while starting on port "
                    f"{self._port}\n{self._diagnostics()}"
                )
            if self._logged_running(log_offset) and self._accepts_tcp():
                return self
            if time.monotonic() >= deadline:
                self.kill()
                raise BrokerError(
                    f"mosquitto did not accept connections on port {self._port} within "
                    f"{timeout:.1f}s\n{self._diagnostics()}"
                )
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.02)  # short wait that also notices an early exit

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait: mosquitto saves its persistence DB. Returns the exit code."""
        with self._lock:
            proc = self._proc
            if proc is None:
                return None
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    raise BrokerError(
                        f"mosquitto ignored SIGTERM for {timeout:.1f}s; killed it\n"
                        f"{self._diagnostics()}"
                    ) from None
            _LIVE_BROKERS.discard(self)
            return proc.returncode

    def kill(self) -> None:
        """SIGKILL and wait: nothing is saved (a crash or power cut)."""
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            _LIVE_BROKERS.discard(self)

    def restart(self, timeout: float = 10.0) -> Self:
        """``stop`` (graceful, persistence saved) then ``start`` on the same port."""
        self.stop(timeout)
        return self.start(timeout)

    def close(self) -> None:
        """Stop the broker whatever state it is in; safe to call more than once."""
        try:
            self.stop()
        except BrokerError:
            self.kill()

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<Broker {self.host}:{self.port} {state} in {self.workdir}>"

    # -- logs -----------------------------------------------------------------------------

    def log_text(self) -> str:
        """Everything mosquitto logged in this work directory (all starts)."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_text(), lines)

    def _output_text(self) -> str:
        try:
            return self.output_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def _diagnostics(self) -> str:
        return (
            f"--- {self.log_path} (tail) ---\n{self.log_tail()}\n"
            f"--- mosquitto stdout/stderr (tail) ---\n{_tail(self._output_text(), 20)}\n"
            f"--- {self.conf_path} ---\n{self.conf_path.read_text(encoding='utf-8')}"
        )

    def _logged_running(self, offset: int) -> bool:
        try:
            with self.log_path.open("rb") as f:
                f.seek(offset)
                return re.search(rb"mosquitto version \S+ running", f.read()) is not None
        except FileNotFoundError:
            return False

    def _accepts_tcp(self) -> bool:
        try:
            with socket.create_connection((LOOPBACK, self._port), timeout=0.5):
                return True
        except OSError:
            return False


# -- clients ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One message as a subscriber got it. ``t`` is ``time.monotonic()`` at arrival."""

    topic: str
    payload: bytes
    retain: bool
    qos: int
    t: float
    dup: bool = False

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8")

    def json(self) -> Any:
        return jsonlib.loads(self.payload)


def _received(msg: mqtt.MQTTMessage) -> Received:
    return Received(
        topic=msg.topic,
        payload=bytes(msg.payload),
        retain=bool(msg.retain),
        qos=int(msg.qos),
        t=time.monotonic(),
        dup=bool(msg.dup),
    )


def _summary(messages: Sequence[Received], last: int = 8) -> str:
    by_topic = Counter(m.topic for m in messages)
    parts = [f"{len(messages)} message(s)"]
    if by_topic:
        parts.append("by topic: " + ", ".join(f"{t} x{n}" for t, n in sorted(by_topic.items())))
    for m in messages[-last:]:
        payload = m.payload[:120].decode("utf-8", errors="replace")
        flags = ("retain " if m.retain else "") + ("dup " if m.dup else "")
        parts.append(f"  {m.topic} q{m.qos} {flags}{payload!r}")
    return "\n".join(parts)


def _new_client(
    client_id: str,
    *,
    protocol: MQTTProtocolVersion,
    username: str | None,
    password: str | None,
    reconnect_on_failure: bool,
) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=protocol,
        reconnect_on_failure=reconnect_on_failure,
    )
    if username is not None:
        client.username_pw_set(username, password)
    return client


class Recorder(_ClosedOnExit):
    """An independent MQTT v5 subscriber that records everything it gets, in order.

    It subscribes (QoS ``qos``) to ``topics`` with a persistent session (``clean_start``
    False, ``SessionExpiryInterval`` ``session_expiry``): while it is disconnected the broker
    queues QoS 1/2 messages for it and delivers them when it reconnects, which it does by
    itself (retry every 0.1-1 s). It re-subscribes on every connect with "retained only if
    the subscription is new", so a resumed session does not get retained messages twice but a
    session the broker lost (``kill``) gets them again.

    A Recorder made with the ``client_id`` of one closed earlier resumes that session.
    By default the constructor waits until the first SUBACK, so publishes after it are seen.
    """

    def __init__(
        self,
        broker: Endpoint,
        topics: str | Sequence[str],
        *,
        client_id: str | None = None,
        qos: int = 1,
        username: str | None = None,
        password: str | None = None,
        session_expiry: int = 3600,
        keepalive: int = 10,
        wait: bool = True,
        timeout: float = 10.0,
    ) -> None:
        self.topics: tuple[str, ...] = (topics,) if isinstance(topics, str) else tuple(topics)
        if not self.topics:
            raise ValueError("a Recorder needs at least one topic filter")
        self.client_id = client_id or f"dg-rec-{uuid.uuid4().hex[:12]}"
        self.qos = qos
        self._host, self._port = broker.host, broker.port
        self._cond = threading.Condition()
        self._messages: list[Received] = []
        self._connected = False
        self._subscribed = False
        self._sub_mid: int | None = None
        self._sub_failure: str | None = None
        self._connects = 0
        self._disconnects = 0
        self._session_present: bool | None = None
        self._last_connack: ReasonCode | None = None
        self._closed = False

        self._client = _new_client(
            self.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            username=username,
            password=password,
            reconnect_on_failure=True,
        )
        # paho types the delays as int but sleeps on floats; 0.1 s makes reconnects prompt.
        self._client.reconnect_delay_set(min_delay=0.1, max_delay=1)  # type: ignore[arg-type]
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = session_expiry
        self._client.connect_async(
            self._host, self._port, keepalive=keepalive, clean_start=False, properties=props
        )
        self._client.loop_start()
        if wait:
            try:
                self.wait_connected(timeout)
            except BaseException:
                self.close()
                raise

    # -- paho callbacks (network thread) ------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._cond:
            self._last_connack = reason_code
            if reason_code.is_failure:
                self._cond.notify_all()
                return
            self._connected = True
            self._subscribed = False
            self._sub_failure = None
            self._connects += 1
            self._session_present = bool(flags.session_present)
            options = SubscribeOptions(
                qos=self.qos, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB
            )
            _, mid = client.subscribe([(t, options) for t in self.topics])
            self._sub_mid = mid
            self._cond.notify_all()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        with self._cond:
            if mid != self._sub_mid:
                return
            failed = [
                f"{t}: {rc}" for t, rc in zip(self.topics, reason_codes, strict=False) if rc >= 128
            ]
            if failed:
                self._sub_failure = "; ".join(failed)
            else:
                self._subscribed = True
            self._cond.notify_all()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._cond:
            if self._connected:
                self._disconnects += 1
            self._connected = False
            self._subscribed = False
            self._cond.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        rec = _received(msg)
        with self._cond:
            self._messages.append(rec)
            self._cond.notify_all()

    # -- state ----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Connected and subscribed (the SUBACK of this connection arrived)."""
        with self._cond:
            return self._connected and self._subscribed

    @property
    def connects(self) -> int:
        """Successful CONNACKs so far (1 after the first connection)."""
        with self._cond:
            return self._connects

    @property
    def disconnects(self) -> int:
        with self._cond:
            return self._disconnects

    @property
    def session_present(self) -> bool | None:
        """The CONNACK session-present flag of the latest connection."""
        with self._cond:
            return self._session_present

    def messages(self, topic: str | None = None) -> list[Received]:
        """Snapshot of what arrived, in order; ``topic`` may be a topic or a filter."""
        with self._cond:
            snapshot = list(self._messages)
        if topic is None:
            return snapshot
        return [m for m in snapshot if mqtt.topic_matches_sub(topic, m.topic)]

    def payloads(self, topic: str | None = None) -> list[bytes]:
        return [m.payload for m in self.messages(topic)]

    def json(self, topic: str | None = None) -> list[Any]:
        """Decoded JSON payloads on ``topic`` (topic or filter), in arrival order."""
        return [m.json() for m in self.messages(topic)]

    def clear(self) -> None:
        with self._cond:
            self._messages.clear()

    def _state(self) -> str:
        return (
            f"recorder {self.client_id} on {self._host}:{self._port} "
            f"connected={self._connected} subscribed={self._subscribed} "
            f"connects={self._connects} disconnects={self._disconnects} "
            f"session_present={self._session_present} last CONNACK={self._last_connack}"
            + (f" SUBACK failure: {self._sub_failure}" if self._sub_failure else "")
        )

    # -- waiting --------------------------------------------------------------------------

    def wait_connected(self, timeout: float = 10.0, *, count: int = 1) -> None:
        """Wait until connected and subscribed after at least ``count`` connections.

        After a broker restart use ``count=rec.connects + 1`` (read before the restart):
        the recorder may not have noticed the drop yet.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (self._connected and self._subscribed and self._connects >= count):
                if self._sub_failure:
                    raise AssertionError(f"subscription refused: {self._state()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"timed out after {timeout:.1f}s waiting for connection #{count}: "
                        f"{self._state()}"
                    )
                self._cond.wait(remaining)

    def wait_for(
        self,
        predicate: Callable[[list[Received]], bool],
        timeout: float = 10.0,
        *,
        what: str | None = None,
    ) -> list[Received]:
        """Wait until ``predicate(all messages so far)`` holds; returns that snapshot.

        Re-evaluated on every arrival. On timeout: AssertionError with a summary.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                snapshot = list(self._messages)
                if predicate(snapshot):
                    return snapshot
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    desc = what or getattr(predicate, "__name__", "condition")
                    raise AssertionError(
                        f"timed out after {timeout:.1f}s waiting for {desc}\n"
                        f"{self._state()}\n{_summary(snapshot)}"
                    )
                self._cond.wait(remaining)

    def wait_count(self, n: int, topic: str | None = None, timeout: float = 10.0) -> list[Received]:
        """Wait for at least ``n`` messages (on ``topic``, a topic or filter); returns them."""

        def enough(msgs: list[Received]) -> bool:
            if topic is None:
                return len(msgs) >= n
            return sum(mqtt.topic_matches_sub(topic, m.topic) for m in msgs) >= n

        self.wait_for(enough, timeout, what=f"{n} message(s) on {topic or 'any topic'}")
        return self.messages(topic)

    # -- end ------------------------------------------------------------------------------

    def close(self, *, end_session: bool = False) -> None:
        """Disconnect and stop the network thread.

        The session stays on the broker (messages keep being queued for ``client_id``)
        unless ``end_session``, which sends DISCONNECT with SessionExpiryInterval 0.
        """
        if self._closed:
            return
        self._closed = True
        props: Properties | None = None
        if end_session:
            props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 0
        self._client.disconnect(properties=props)
        self._client.loop_stop()

    def __repr__(self) -> str:
        return f"<Recorder {self.client_id} topics={list(self.topics)}>"


class _OneShot:
    """A synchronous client: connect once (no automatic reconnect), record callbacks."""

    def __init__(
        self,
        broker: Endpoint,
        *,
        client_id: str | None,
        protocol: MQTTProtocolVersion,
        username: str | None,
        password: str | None,
        prefix: str,
    ) -> None:
        self.client_id = client_id or f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.protocol = protocol
        self.cond = threading.Condition()
        self.connack: ReasonCode | None = None
        self.disconnected = False
        self.acks: dict[int, ReasonCode] = {}
        self.subacks: dict[int, list[ReasonCode]] = {}
        self.messages: list[Received] = []
        self.client = _new_client(
            self.client_id,
            protocol=protocol,
            username=username,
            password=password,
            reconnect_on_failure=False,
        )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self._host, self._port = broker.host, broker.port
        self._started = False

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self.cond:
            self.connack = reason_code
            self.cond.notify_all()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self.cond:
            self.disconnected = True
            self.cond.notify_all()

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        with self.cond:
            self.acks[mid] = reason_code
            self.cond.notify_all()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        with self.cond:
            self.subacks[mid] = list(reason_codes)
            self.cond.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        rec = _received(msg)
        with self.cond:
            self.messages.append(rec)
            self.cond.notify_all()

    def wait(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not done():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"{self.client_id}: timed out after {timeout:.1f}s waiting for {what} "
                        f"(CONNACK={self.connack}, disconnected={self.disconnected})"
                    )
                self.cond.wait(remaining)

    def connect(self, timeout: float) -> ReasonCode:
        """Connect (clean session) and wait for CONNACK or the drop; return its code."""
        self.client.connect(self._host, self._port, keepalive=10)
        self.client.loop_start()
        self._started = True
        self.wait(lambda: self.connack is not None or self.disconnected, timeout, "CONNACK")
        if self.connack is None:
            raise AssertionError(f"{self.client_id}: connection closed before CONNACK")
        return self.connack

    def close(self) -> None:
        if self._started:
            self.client.disconnect()
            self.client.loop_stop()
            self._started = False


@dataclass(frozen=True)
class PublishOutcome:
    """What the broker answered to one publish (PUBACK/PUBREC reason code, QoS > 0).

    For QoS 0 there is no acknowledgement: ``reason_code`` is paho's local "Success".
    For MQTT 3.1.1 there is no reason code on the wire: paho reports "Success".
    """

    topic: str
    mid: int
    qos: int
    reason_code: ReasonCode = field(compare=False)

    @property
    def value(self) -> int:
        return int(self.reason_code.value)

    @property
    def name(self) -> str:
        return str(self.reason_code.getName())

    @property
    def is_failure(self) -> bool:
        return bool(self.reason_code.is_failure)


class Publisher(_ClosedOnExit):
    """A connected test-side publisher whose ``publish`` waits for the broker's answer."""

    def __init__(
        self,
        broker: Endpoint,
        *,
        client_id: str | None = None,
        protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.timeout = timeout
        self._c = _OneShot(
            broker,
            client_id=client_id,
            protocol=protocol,
            username=username,
            password=password,
            prefix="dg-pub",
        )
        try:
            rc = self._c.connect(timeout)
            if rc.is_failure:
                raise AssertionError(f"{self._c.client_id}: connection refused: {rc}")
        except BaseException:
            self._c.close()
            raise

    @property
    def client_id(self) -> str:
        return self._c.client_id

    def publish(
        self,
        topic: str,
        payload: bytes | str | Mapping[str, Any] | Sequence[Any] = b"",
        *,
        qos: int = 1,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> PublishOutcome:
        """Publish (dicts/lists are sent as JSON) and wait for PUBACK/PUBCOMP."""
        data = payload if isinstance(payload, bytes | str) else jsonlib.dumps(payload)
        info = self._c.client.publish(topic, data, qos=qos, retain=retain, properties=properties)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise AssertionError(f"publish to {topic} failed locally: {mqtt.error_string(info.rc)}")
        mid = info.mid
        self._c.wait(lambda: mid in self._c.acks, self.timeout, f"PUBACK of mid {mid}")
        with self._c.cond:
            rc = self._c.acks.pop(mid)
        return PublishOutcome(topic=topic, mid=mid, qos=qos, reason_code=rc)

    def publish_many(
        self, items: Iterable[tuple[str, bytes | str]], *, qos: int = 1, retain: bool = False
    ) -> list[PublishOutcome]:
        return [self.publish(t, p, qos=qos, retain=retain) for t, p in items]

    def close(self) -> None:
        self._c.close()


def publish(
    broker: Endpoint,
    topic: str,
    payload: bytes | str | Mapping[str, Any] | Sequence[Any] = b"",
    *,
    qos: int = 1,
    retain: bool = False,
    protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5,
    username: str | None = None,
    password: str | None = None,
    timeout: float = 10.0,
) -> PublishOutcome:
    """Connect, publish one message, wait for the broker's acknowledgement, disconnect."""
    with Publisher(
        broker, protocol=protocol, username=username, password=password, timeout=timeout
    ) as pub:
        return pub.publish(topic, payload, qos=qos, retain=retain)


def try_connect(
    broker: Endpoint,
    *,
    username: str | None = None,
    password: str | None = None,
    protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5,
    client_id: str | None = None,
    timeout: float = 10.0,
) -> ReasonCode:
    """The CONNACK reason code the broker gives this login (then disconnects)."""
    c = _OneShot(
        broker,
        client_id=client_id,
        protocol=protocol,
        username=username,
        password=password,
        prefix="dg-try",
    )
    try:
        return c.connect(timeout)
    finally:
        c.close()


def fetch_retained(
    broker: Endpoint,
    topic_filter: str,
    *,
    timeout: float = 10.0,
    username: str | None = None,
    password: str | None = None,
    marker_prefix: str = "dg-test/marker",
) -> list[Received]:
    """The retained messages under ``topic_filter``, read by a fresh clean-session client.

    Subscribes to the filter and a unique marker topic, then publishes to the marker after
    the SUBACK: the broker queues the filter's retained messages when it handles the
    SUBSCRIBE, so on this one connection they all arrive before the marker. (With an ACL the
    login must be allowed to publish and read ``marker_prefix``.)
    """
    marker = f"{marker_prefix}/{uuid.uuid4().hex}"
    c = _OneShot(
        broker,
        client_id=None,
        protocol=MQTTProtocolVersion.MQTTv5,
        username=username,
        password=password,
        prefix="dg-ret",
    )
    try:
        rc = c.connect(timeout)
        if rc.is_failure:
            raise AssertionError(f"{c.client_id}: connection refused: {rc}")
        result, sub_mid = c.client.subscribe([(topic_filter, 1), (marker, 1)])
        if sub_mid is None:
            raise AssertionError(f"{c.client_id}: SUBSCRIBE not sent: {result}")
        mid = sub_mid
        c.wait(lambda: mid in c.subacks, timeout, "SUBACK")
        refused = [rc for rc in c.subacks[mid] if rc.is_failure]
        if refused:
            raise AssertionError(f"{c.client_id}: subscription refused: {refused}")
        info = c.client.publish(marker, b"marker", qos=1)
        c.wait(
            lambda: any(m.topic == marker for m in c.messages),
            timeout,
            f"the marker on {marker} (published as mid {info.mid})",
        )
        with c.cond:
            return [m for m in c.messages if m.retain and m.topic != marker]
    finally:
        c.close()

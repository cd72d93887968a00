"""One QEMU guest: booted from the cached image's kernel, driven through the agent's port.

The seam between the host and the guest is a virtio-serial port (``org.dermaguard.agent``)
backed by a Unix socket on the host; ``guest_agent.py`` answers on it inside the guest. There is
no ssh and no shell on the network. The guest's network is QEMU's user network with
``restrict=on`` (no route anywhere, not even to the host's other addresses) and forwards from
127.0.0.1 on the host to the guest's dashboard and its test broker listener.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from nbd_cache import NbdServer

KERNEL_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Machine:
    """What differs between the emulated architectures: QEMU's binary, its machine, the CPU
    under TCG and the kernel's name for the first serial port."""

    qemu: str
    machine: str
    tcg_cpu: str
    console: str


MACHINES = {
    "amd64": Machine("qemu-system-x86_64", "q35", "max", "ttyS0"),
    # A Raspberry Pi 4's core. ("max" would emulate pointer authentication, which TCG does
    # slowly.) KVM cannot run it on an x86 host: TCG only.
    "arm64": Machine("qemu-system-aarch64", "virt", "cortex-a72", "ttyAMA0"),
}


class GuestError(Exception):
    """The guest did not do what was asked in time."""


@dataclass
class Reply:
    rc: int
    out: str
    err: str
    mono: float
    wall: float


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Guest:
    kernel: Path
    initrd: Path
    disk: Path
    payload: Path
    workdir: Path
    arch: str = "amd64"
    accel: str = "tcg"
    memory_mb: int = 1024
    append_extra: str = ""
    quiet: bool = True
    rtc_base: str | None = None
    #: The root disk behind a volatile write-back cache (nbd_cache.py); None: the raw file,
    #: where every write QEMU passed on survives a cut.
    disk_cache: NbdServer | None = None
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    sock: socket.socket | None = None
    _buffer: bytes = b""
    _next_id: int = 0
    boots: int = 0

    @property
    def serial_log(self) -> Path:
        return self.workdir / f"serial-{self.boots}.log"

    def start(self) -> float:
        """Launch QEMU; returns the host's monotonic time of the launch."""
        self.boots += 1
        agent_sock = self.workdir / "agent.sock"
        agent_sock.unlink(missing_ok=True)
        if not self.ports:
            self.ports = {"web": free_port(), "mqtt": free_port()}
        fwd = (
            f"hostfwd=tcp:127.0.0.1:{self.ports['web']}-:8080,"
            f"hostfwd=tcp:127.0.0.1:{self.ports['mqtt']}-:1884"
        )
        quiet = "quiet" if self.quiet else ""
        machine = MACHINES[self.arch]
        append = (
            f"root=/dev/vda rw console={machine.console},115200 {quiet} panic=5 {self.append_extra}"
        )
        root = (
            f"file={self.disk},format=raw,if=virtio,cache=none,aio=threads"
            if self.disk_cache is None
            else f"file={self.disk_cache.uri},format=raw,if=virtio,cache=none"
        )
        cmd = [
            machine.qemu,
            "-machine", f"{machine.machine},accel={self.accel}",
            "-cpu", machine.tcg_cpu if self.accel == "tcg" else "host",
            "-smp", "2",
            "-m", str(self.memory_mb),
            "-nodefaults", "-display", "none", "-no-reboot",
            "-kernel", str(self.kernel),
            "-initrd", str(self.initrd),
            "-append", append,
            "-drive", root,
            "-drive", f"file={self.payload},format=raw,if=virtio,readonly=on",
            "-netdev", f"user,id=n0,restrict=on,{fwd}",
            "-device", "virtio-net-pci,netdev=n0",
            "-chardev", f"file,id=ser,path={self.serial_log}",
            "-serial", "chardev:ser",
            "-chardev", f"socket,id=agent,path={agent_sock},server=on,wait=off",
            "-device", "virtio-serial-pci",
            "-device", "virtserialport,chardev=agent,name=org.dermaguard.agent",
        ]  # fmt: skip
        if self.rtc_base is not None:
            cmd += ["-rtc", f"base={self.rtc_base},clock=host"]
        launched = time.monotonic()
        self.proc = subprocess.Popen(
            ["nice", "-n", "5", *cmd],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / "qemu.err").open("ab"),
        )
        # The socket's path appears before QEMU listens on it, and a QEMU that fails at once
        # (a host KVM that cannot run this CPU asserts after creating it) leaves it behind.
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise GuestError(f"QEMU did not start: {(self.workdir / 'qemu.err').read_text()}")
            if agent_sock.exists():
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.connect(str(agent_sock))
                except OSError:
                    sock.close()
                else:
                    break
            time.sleep(0.05)
        self.sock = sock
        self._buffer = b""
        return launched

    def kernel_printed(self, timeout: float) -> bool:
        """Whether the kernel (not only its boot stub) printed within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.serial_log.exists() and b"Linux version" in self.serial_log.read_bytes():
                return True
            time.sleep(0.2)
        return False

    def cut_power(self) -> None:
        """SIGKILL QEMU: the guest's page cache and every write QEMU had not issued are gone;
        with ``disk_cache``, so is every write the guest had not flushed."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            if self.disk_cache is not None:
                self.disk_cache.cut()
        self._close_socket()

    def shutdown(self) -> None:
        """A clean poweroff through the agent, or a cut when the guest does not answer."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.sh("systemctl --no-block poweroff", timeout=10)
            self.proc.wait(timeout=60)
        except (GuestError, subprocess.TimeoutExpired, OSError):
            pass
        self.cut_power()

    def _close_socket(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def sh(
        self, script: str, timeout: float = 120.0, check: bool = False, wait_s: float | None = None
    ) -> Reply:
        """Run ``script`` as root in the guest; raises :class:`GuestError` on no answer.

        ``wait_s``: how long to wait for the answer (default: the timeout and 30 s more).
        """
        if self.sock is None:
            raise GuestError("the guest is not running")
        self._next_id += 1
        rid = self._next_id
        request = {"id": rid, "sh": script, "timeout": timeout}
        self.sock.sendall((json.dumps(request) + "\n").encode())
        deadline = time.monotonic() + (timeout + 30 if wait_s is None else wait_s)
        while True:
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                try:
                    data = json.loads(line)
                except ValueError:
                    continue
                if data.get("id") == rid:
                    reply = Reply(data["rc"], data["out"], data["err"], data["mono"], data["wall"])
                    if check and reply.rc != 0:
                        raise GuestError(
                            f"{script!r} failed ({reply.rc}): {reply.err or reply.out}"
                        )
                    return reply
            left = deadline - time.monotonic()
            if left <= 0 or (self.proc is not None and self.proc.poll() is not None):
                raise GuestError(f"no answer to {script!r}")
            self.sock.settimeout(min(left, 1.0))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                raise GuestError("the agent's channel closed")
            self._buffer += chunk

    def wait_agent(self, timeout: float) -> Reply:
        """Wait until the agent answers (the guest has booted far enough to run it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise GuestError(f"QEMU exited during boot; see {self.serial_log}")
            try:
                return self.sh("true", timeout=5, wait_s=2)
            except GuestError:
                # the request went to a port nobody reads yet: send again on a fresh id
                continue
        raise GuestError(f"the guest's agent did not answer within {timeout:g} s")

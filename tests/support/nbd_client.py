"""A minimal NBD client (fixed newstyle, simple replies), to test the system test's cache layer
(tests/system/nbd_cache.py) over a real socket, as QEMU speaks to it."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
OPT_REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
OPT_EXPORT_NAME = 1
OPT_GO = 7
OPT_STRUCTURED_REPLY = 8
REP_ACK = 1
REP_INFO = 3
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH = 0, 1, 2, 3
CMD_FLAG_FUA = 1


class NbdClient:
    """One connection: the handshake in the constructor, then one request at a time."""

    def __init__(self, path: Path, *, go: bool = True) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(str(path))
        magic, opt, self.handshake_flags = struct.unpack(">QQH", self._recv(18))
        assert (magic, opt) == (NBDMAGIC, IHAVEOPT)
        self.sock.sendall(struct.pack(">I", 1 | 2))  # FIXED_NEWSTYLE | NO_ZEROES
        self.refused: list[int] = []
        # An option the server does not know: it must answer and carry on.
        self.refused.append(self._option(OPT_STRUCTURED_REPLY, b"")[0][0])
        if go:
            replies = self._option(OPT_GO, struct.pack(">I", 0) + struct.pack(">H", 0))
            info = next(data for kind, data in replies if kind == REP_INFO)
            _, self.size, self.flags = struct.unpack(">HQH", info)
        else:
            self.sock.sendall(struct.pack(">QII", IHAVEOPT, OPT_EXPORT_NAME, 0))
            self.size, self.flags = struct.unpack(">QH", self._recv(10))
        self._handle = 0

    def _recv(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError("the server closed the connection")
            data += chunk
        return data

    def _option(self, option: int, data: bytes) -> list[tuple[int, bytes]]:
        """Send an option; its replies (kind, data) up to the final one (ACK or an error)."""
        self.sock.sendall(struct.pack(">QII", IHAVEOPT, option, len(data)) + data)
        replies: list[tuple[int, bytes]] = []
        while True:
            magic, opt, kind, length = struct.unpack(">QIII", self._recv(20))
            assert magic == OPT_REPLY_MAGIC and opt == option
            replies.append((kind, self._recv(length)))
            if kind != REP_INFO:
                return replies

    def request(
        self, cmd: int, offset: int = 0, length: int = 0, data: bytes = b"", flags: int = 0
    ) -> tuple[int, bytes]:
        """Send a request; (error, data read). Data comes back only for a read that succeeded."""
        self._handle += 1
        head = struct.pack(">IHHQQI", REQUEST_MAGIC, flags, cmd, self._handle, offset, length)
        self.sock.sendall(head + data)
        magic, error, handle = struct.unpack(">IIQ", self._recv(16))
        assert magic == SIMPLE_REPLY_MAGIC and handle == self._handle
        return error, (self._recv(length) if cmd == CMD_READ and error == 0 else b"")

    def read(self, offset: int, length: int) -> bytes:
        error, data = self.request(CMD_READ, offset, length)
        assert error == 0, error
        return data

    def write(self, offset: int, data: bytes, *, fua: bool = False) -> None:
        flags = CMD_FLAG_FUA if fua else 0
        error, _ = self.request(CMD_WRITE, offset, len(data), data, flags)
        assert error == 0, error

    def flush(self) -> None:
        error, _ = self.request(CMD_FLUSH)
        assert error == 0, error

    def disconnect(self) -> None:
        head = struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_DISC, 0, 0, 0)
        self.sock.sendall(head)
        self.sock.close()

    def close(self) -> None:
        """Drop the link without a word, as a killed QEMU does."""
        self.sock.close()

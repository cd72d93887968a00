"""A disk with a volatile write-back cache, served to QEMU over NBD on a Unix socket.

``cache=none`` on a raw file keeps every write QEMU passed on, so a killed QEMU models a card
that never loses what it acknowledged. A card's own cache does lose it: this server keeps each
write in memory (an overlay of dirty blocks that reads consult first) until the client asks for
a flush (``NBD_CMD_FLUSH``, or ``NBD_CMD_FLAG_FUA`` on that one write); only then does the data
go to the file and the file get fsynced. :meth:`NbdServer.cut` is the power cut: what was not
flushed is gone (docs/RELIABILITY.md, "Power cuts and boots").

What a cut drops is the model's choice (``keep``):

- ``keep=0`` (``volatile``): every unflushed write. The simple, harsh model.
- ``0 < keep < 1`` (``torn``): each dirty block reaches the file with probability ``keep``,
  drawn from a seeded RNG, so the file holds an arbitrary subset of the writes since the last
  flush: writes torn at block edges and reordered, as a card's controller may leave them.

Not modelled: a flush that the device acknowledges and then loses (a card that lies about
flushes), damage to data already flushed (a torn erase block), and bit rot.

Stdlib only: the fixed newstyle handshake with ``NBD_OPT_GO``/``NBD_OPT_INFO`` and
``NBD_OPT_EXPORT_NAME``, simple replies, and the commands READ, WRITE (with FUA), FLUSH, DISC.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
OPT_REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698

FLAG_FIXED_NEWSTYLE = 1
FLAG_NO_ZEROES = 2

OPT_EXPORT_NAME = 1
OPT_ABORT = 2
OPT_INFO = 6
OPT_GO = 7

REP_ACK = 1
REP_INFO = 3
REP_ERR_UNSUP = 2**31 + 1
REP_ERR_INVALID = 2**31 + 3
INFO_EXPORT = 0

TFLAG_HAS_FLAGS = 1
TFLAG_SEND_FLUSH = 4
TFLAG_SEND_FUA = 8
TRANSMISSION_FLAGS = TFLAG_HAS_FLAGS | TFLAG_SEND_FLUSH | TFLAG_SEND_FUA

CMD_READ = 0
CMD_WRITE = 1
CMD_DISC = 2
CMD_FLUSH = 3
CMD_FLAG_FUA = 1

EPERM = 1
EIO = 5
EINVAL = 22
ENOSPC = 28

#: The largest request served (QEMU sends at most 32 MiB); a larger one is refused.
MAX_REQUEST = 32 * 1024 * 1024
#: The cache's granularity: ext4's block and SQLite's page.
BLOCK = 4096

_REQUEST = struct.Struct(">IHHQQI")
_SIMPLE_REPLY = struct.Struct(">IIQ")
_OPT_HEADER = struct.Struct(">QII")
_OPT_REPLY = struct.Struct(">QIII")


class ProtocolError(Exception):
    """The client broke the protocol in a way that leaves no way to go on (the link closes)."""


@dataclass(frozen=True)
class Cut:
    """What one power cut did to the cache."""

    writes_dropped: int  # write requests since the last flush, not written with FUA
    bytes_dropped: int  # their bytes
    blocks_dropped: int  # dirty blocks that never reached the file
    blocks_kept: int  # dirty blocks that did (``torn`` only)


class WriteBackDisk:
    """A raw disk file behind a volatile write-back cache of ``BLOCK``-sized dirty blocks."""

    def __init__(self, path: Path, *, keep: float = 0.0, seed: int = 0) -> None:
        if not 0.0 <= keep < 1.0:
            raise ValueError("keep is a probability below 1")
        self.fd = os.open(path, os.O_RDWR)
        self.size = os.fstat(self.fd).st_size
        self.keep = keep
        self.rng = random.Random(seed)
        self.dirty: dict[int, bytearray] = {}
        self.writes_unflushed = 0
        self.bytes_unflushed = 0
        self.flushes = 0  # how often the client asked: shows the guest's barriers came through
        self.lock = threading.Lock()

    def close(self) -> None:
        os.close(self.fd)

    def _block(self, index: int) -> bytearray:
        block = self.dirty.get(index)
        if block is None:
            block = bytearray(os.pread(self.fd, BLOCK, index * BLOCK).ljust(BLOCK, b"\0"))
            self.dirty[index] = block
        return block

    def read(self, offset: int, length: int) -> bytes:
        with self.lock:
            data = bytearray(os.pread(self.fd, length, offset).ljust(length, b"\0"))
            if not self.dirty:
                return bytes(data)
            for index in range(offset // BLOCK, (offset + length - 1) // BLOCK + 1):
                block = self.dirty.get(index)
                if block is None:
                    continue
                start = max(offset, index * BLOCK)
                end = min(offset + length, (index + 1) * BLOCK)
                data[start - offset : end - offset] = block[
                    start - index * BLOCK : end - index * BLOCK
                ]
            return bytes(data)

    def write(self, offset: int, data: bytes, *, fua: bool = False) -> None:
        """Into the cache; with ``fua``, also onto the file and fsynced before returning."""
        with self.lock:
            end = offset + len(data)
            for index in range(offset // BLOCK, (end - 1) // BLOCK + 1) if data else ():
                start = max(offset, index * BLOCK)
                stop = min(end, (index + 1) * BLOCK)
                if stop - start == BLOCK:
                    self.dirty[index] = bytearray(data[start - offset : stop - offset])
                else:
                    block = self._block(index)
                    block[start - index * BLOCK : stop - index * BLOCK] = data[
                        start - offset : stop - offset
                    ]
            if fua:
                os.pwrite(self.fd, data, offset)
                os.fsync(self.fd)
            else:
                self.writes_unflushed += 1
                self.bytes_unflushed += len(data)

    def flush(self) -> None:
        """Every cached block onto the file, then fsync: what the client wrote is durable."""
        with self.lock:
            self._write_through(sorted(self.dirty))
            os.fsync(self.fd)
            self.dirty.clear()
            self.writes_unflushed = self.bytes_unflushed = 0
            self.flushes += 1

    def _write_through(self, indexes: list[int]) -> None:
        for index in indexes:
            block = self.dirty[index]
            os.pwrite(
                self.fd, block[: max(0, min(BLOCK, self.size - index * BLOCK))], index * BLOCK
            )

    def cut(self) -> Cut:
        """The power fails: the cache's contents are lost (``keep``: a random part survives)."""
        with self.lock:
            kept = [i for i in sorted(self.dirty) if self.keep and self.rng.random() < self.keep]
            self._write_through(kept)
            os.fsync(self.fd)
            cut = Cut(
                self.writes_unflushed,
                self.bytes_unflushed,
                len(self.dirty) - len(kept),
                len(kept),
            )
            self.dirty.clear()
            self.writes_unflushed = self.bytes_unflushed = 0
            return cut


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    chunks: list[bytes] = []
    while n:
        chunk = conn.recv(min(n, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


class NbdServer:
    """Serves a :class:`WriteBackDisk` on a Unix socket, one thread per connection."""

    def __init__(self, disk: WriteBackDisk, path: Path) -> None:
        self.disk = disk
        self.path = path
        path.unlink(missing_ok=True)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen()
        self.conns: list[tuple[socket.socket, threading.Thread]] = []
        self.cuts: list[Cut] = []
        self.errors: list[str] = []
        self._accepter = threading.Thread(target=self._accept, name="nbd-accept", daemon=True)
        self._accepter.start()

    @property
    def uri(self) -> str:
        """The name QEMU's ``-drive file=`` takes (its legacy NBD syntax)."""
        return f"nbd:unix:{self.path}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.conns.append((conn, thread))
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                if self._handshake(conn):
                    self._transmission(conn)
        except (EOFError, ConnectionError):
            pass  # the client went away (QEMU killed): not an error of the server's
        except (ProtocolError, OSError) as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def _handshake(self, conn: socket.socket) -> bool:
        """The fixed newstyle negotiation; True when transmission begins."""
        conn.sendall(struct.pack(">QQH", NBDMAGIC, IHAVEOPT, FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES))
        (client_flags,) = struct.unpack(">I", _recv_exact(conn, 4))
        no_zeroes = bool(client_flags & FLAG_NO_ZEROES)
        while True:
            magic, option, length = _OPT_HEADER.unpack(_recv_exact(conn, _OPT_HEADER.size))
            if magic != IHAVEOPT:
                raise ProtocolError(f"bad option magic {magic:#x}")
            if length > 65536:
                raise ProtocolError(f"option data of {length} bytes")
            data = _recv_exact(conn, length)
            if option == OPT_EXPORT_NAME:  # no reply header: straight into transmission
                conn.sendall(
                    struct.pack(">QH", self.disk.size, TRANSMISSION_FLAGS)
                    + (b"" if no_zeroes else bytes(124))
                )
                return True
            if option == OPT_ABORT:
                self._opt_reply(conn, option, REP_ACK)
                return False
            if option in (OPT_GO, OPT_INFO):
                if not _go_data_valid(data):
                    self._opt_reply(conn, option, REP_ERR_INVALID)
                    continue
                info = struct.pack(">HQH", INFO_EXPORT, self.disk.size, TRANSMISSION_FLAGS)
                self._opt_reply(conn, option, REP_INFO, info)
                self._opt_reply(conn, option, REP_ACK)
                if option == OPT_GO:
                    return True
                continue
            self._opt_reply(conn, option, REP_ERR_UNSUP)  # structured replies, meta contexts...

    @staticmethod
    def _opt_reply(conn: socket.socket, option: int, kind: int, data: bytes = b"") -> None:
        conn.sendall(_OPT_REPLY.pack(OPT_REPLY_MAGIC, option, kind, len(data)) + data)

    def _transmission(self, conn: socket.socket) -> None:
        disk = self.disk
        while True:
            magic, flags, cmd, handle, offset, length = _REQUEST.unpack(
                _recv_exact(conn, _REQUEST.size)
            )
            if magic != REQUEST_MAGIC:
                raise ProtocolError(f"bad request magic {magic:#x}")
            in_range = offset + length <= disk.size and length <= MAX_REQUEST
            if cmd == CMD_READ:
                if not in_range:
                    self._reply(conn, handle, EINVAL)
                else:
                    self._reply(conn, handle, 0, disk.read(offset, length))
            elif cmd == CMD_WRITE:
                if length > MAX_REQUEST:
                    raise ProtocolError(f"a write of {length} bytes")
                data = _recv_exact(conn, length)
                if not in_range:
                    self._reply(conn, handle, ENOSPC)
                else:
                    disk.write(offset, data, fua=bool(flags & CMD_FLAG_FUA))
                    self._reply(conn, handle, 0)
            elif cmd == CMD_FLUSH:
                disk.flush()
                self._reply(conn, handle, 0)
            elif cmd == CMD_DISC:
                return
            else:
                self._reply(conn, handle, EINVAL)

    @staticmethod
    def _reply(conn: socket.socket, handle: int, error: int, data: bytes = b"") -> None:
        conn.sendall(_SIMPLE_REPLY.pack(SIMPLE_REPLY_MAGIC, error, handle) + data)

    def cut(self, timeout: float = 30.0) -> Cut:
        """The power cut, once the client is dead: no request of the old link lands after it.

        Waits for each connection to end (a killed QEMU's socket reads EOF at once); one still
        open after ``timeout`` is shut down, as the power would end it.
        """
        for conn, thread in self.conns:
            thread.join(timeout)
            if thread.is_alive():
                with_shutdown(conn)
                thread.join()
        self.conns = [(c, t) for c, t in self.conns if t.is_alive()]
        cut = self.disk.cut()
        self.cuts.append(cut)
        return cut

    def close(self) -> None:
        """Stop serving; what is still cached stays unflushed (call ``disk.flush`` first)."""
        with_shutdown(self.listener)  # wakes the accept() (close alone does not, on Linux)
        self.listener.close()
        self._accepter.join()
        for conn, thread in self.conns:
            with_shutdown(conn)
            thread.join()
        self.path.unlink(missing_ok=True)


def _go_data_valid(data: bytes) -> bool:
    """NBD_OPT_GO's data: a name's length, the name, a count of info requests, the requests."""
    if len(data) < 6:
        return False
    (name_len,) = struct.unpack_from(">I", data)
    if len(data) < 6 + name_len:
        return False
    (requests,) = struct.unpack_from(">H", data, 4 + name_len)
    return bool(len(data) == 6 + name_len + 2 * int(requests))


def with_shutdown(conn: socket.socket) -> None:
    """Shut a socket down, whether or not its peer already closed it."""
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)

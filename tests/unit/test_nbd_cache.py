"""The system test's volatile disk (tests/system/nbd_cache.py), over a real NBD socket: what a
flush made durable survives a cut, what was only cached does not (docs/RELIABILITY.md, "Power
cuts and boots")."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from support.nbd_client import CMD_READ, CMD_WRITE, NbdClient

SIZE = 64 * 1024 + 100  # a short last block, as a disk's size need not be a multiple of 4 KiB
OLD = bytes(i % 251 for i in range(SIZE))


def _load() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "system" / "nbd_cache.py"
    spec = importlib.util.spec_from_file_location("nbd_cache", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["nbd_cache"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


nbd_cache = _load()


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "disk.img"
    path.write_bytes(OLD)
    return path


def _serve(image: Path, tmp_path: Path, keep: float = 0.0, seed: int = 0) -> Any:
    disk = nbd_cache.WriteBackDisk(image, keep=keep, seed=seed)
    return nbd_cache.NbdServer(disk, tmp_path / "nbd.sock")


@pytest.fixture
def server(image: Path, tmp_path: Path) -> Iterator[Any]:
    srv = _serve(image, tmp_path)
    yield srv
    srv.close()
    srv.disk.close()
    assert srv.errors == []


def _client(server: Any, *, go: bool = True) -> NbdClient:
    return NbdClient(server.path, go=go)


@pytest.mark.parametrize("go", [True, False], ids=["opt_go", "opt_export_name"])
def test_handshake_advertises_flush_and_fua(server: Any, go: bool) -> None:
    client = _client(server, go=go)
    assert client.size == SIZE
    assert client.flags & 1 and client.flags & 4 and client.flags & 8  # HAS_FLAGS, FLUSH, FUA
    assert client.refused == [2**31 + 1]  # structured replies: NBD_REP_ERR_UNSUP, not a hang
    assert client.read(0, 16) == OLD[:16]
    client.disconnect()


def test_a_read_sees_its_own_unflushed_write(server: Any, image: Path) -> None:
    client = _client(server)
    new = b"\xab" * 5000
    client.write(4000, new)  # across three blocks, aligned to none
    assert client.read(3990, 5020) == OLD[3990:4000] + new + OLD[9000:9010]
    assert image.read_bytes() == OLD  # only in the cache
    client.disconnect()


def test_flushed_data_survives_a_cut(server: Any, image: Path) -> None:
    client = _client(server)
    client.write(SIZE - 10, b"z" * 10)  # the short last block too
    client.write(100, b"y" * 8192)
    client.flush()
    client.close()
    cut = server.cut()
    assert cut.writes_dropped == 0 and cut.blocks_dropped == 0
    assert image.read_bytes() == OLD[:100] + b"y" * 8192 + OLD[8292 : SIZE - 10] + b"z" * 10


def test_an_unflushed_write_is_lost_by_a_cut(server: Any, image: Path) -> None:
    client = _client(server)
    client.write(0, b"a" * 4096)
    client.flush()
    client.write(0, b"b" * 100)
    client.write(20000, b"c" * 300)
    client.close()  # killed: no flush, no disconnect
    cut = server.cut()
    assert (cut.writes_dropped, cut.bytes_dropped, cut.blocks_dropped) == (2, 400, 2)
    assert image.read_bytes() == b"a" * 4096 + OLD[4096:]
    again = _client(server)  # the next boot reads what the file holds
    assert again.read(0, 200) == b"a" * 200 and again.read(20000, 300) == OLD[20000:20300]
    again.disconnect()


def test_the_cache_outlives_a_connection_until_the_cut(server: Any, image: Path) -> None:
    client = _client(server)
    client.write(0, b"d" * 10)
    client.disconnect()
    again = _client(server)  # the card still has power: its cache still answers
    assert again.read(0, 10) == b"d" * 10
    assert image.read_bytes() == OLD
    again.disconnect()


def test_a_fua_write_survives_a_cut(server: Any, image: Path) -> None:
    client = _client(server)
    client.write(0, b"e" * 10)  # cached only
    client.write(30000, b"f" * 5000, fua=True)
    assert image.read_bytes()[30000:35000] == b"f" * 5000  # durable when acknowledged
    client.close()
    cut = server.cut()
    assert cut.writes_dropped == 1
    data = image.read_bytes()
    assert data[:10] == OLD[:10] and data[30000:35000] == b"f" * 5000


def test_bad_requests_get_an_error_and_the_link_goes_on(server: Any) -> None:
    client = _client(server)
    assert client.request(CMD_READ, SIZE - 10, 11) == (22, b"")  # EINVAL, no data follows
    assert client.request(CMD_READ, 2**63, 10)[0] == 22
    assert client.request(CMD_WRITE, SIZE, 4, b"wxyz")[0] == 28  # ENOSPC, payload consumed
    assert client.request(99, 0, 0)[0] == 22  # an unknown command
    assert client.read(0, 16) == OLD[:16]  # still in step
    client.disconnect()


def test_torn_cuts_keep_a_seeded_part_of_the_cache(image: Path, tmp_path: Path) -> None:
    def torn(seed: int) -> tuple[bytes, Any]:
        image.write_bytes(OLD)
        srv = _serve(image, tmp_path, keep=0.5, seed=seed)
        client = NbdClient(srv.path)
        for block in range(16):
            client.write(block * 4096, bytes([block + 1]) * 4096)
        client.close()
        cut = srv.cut()
        srv.close()
        srv.disk.close()
        return image.read_bytes(), cut

    data, cut = torn(7)
    kept = [b for b in range(16) if data[b * 4096 : (b + 1) * 4096] == bytes([b + 1]) * 4096]
    lost = [
        b for b in range(16) if data[b * 4096 : (b + 1) * 4096] == OLD[b * 4096 : (b + 1) * 4096]
    ]
    assert kept and lost and len(kept) + len(lost) == 16  # some of each, each block whole
    assert (cut.blocks_kept, cut.blocks_dropped) == (len(kept), len(lost))
    assert torn(7)[0] == data  # the seed decides

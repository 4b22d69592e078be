"""The lean tar reader of shards (`vlzoo.core.data.tarstream`) reads what `tarfile` reads: the same regular
members, names and bytes, in ustar, GNU and pax archives, and stops where `tarfile` would, saying why."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from vlzoo.core.data.tarstream import TarMembers, _byte_sum, _checksum_ok, _number

LONG = "a-folder-with-a-long-name/" * 5 + "000000001.png"  # 143 characters: > ustar's 100 of a name


def _archive(fmt: int, members: list[tuple[str, bytes | None]]) -> bytes:
    """A tar archive in format `fmt`; a member with data None is a directory, with b"->" a symlink."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif data == b"->":
                info.type, info.linkname = tarfile.SYMTYPE, "elsewhere/" + "x" * 120
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _tarfile_says(data: bytes) -> list[tuple[int, str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [(m.offset, m.name, tar.extractfile(m).read()) for m in tar.getmembers() if m.isreg()]


def _read(data: bytes) -> tuple[list[tuple[int, str, bytes]], str | None]:
    members = TarMembers(io.BytesIO(data))
    return list(members.files()), members.problem


MEMBERS = [
    ("000000000.png", os.urandom(700)),
    ("000000000.txt", "a red cube, naïve café".encode()),
    ("folder", None),
    ("000000000.json", b"{}"),
    (LONG, os.urandom(1024)),  # exactly two blocks: no padding
    ("link", b"->"),
    ("empty.txt", b""),
    ("ünïcode-名前.txt", b"x" * 513),
]


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT], ids=["gnu", "pax"])
def test_regular_members_are_those_tarfile_reads(fmt):
    data = _archive(fmt, MEMBERS)
    got, problem = _read(data)
    assert problem is None
    assert got == _tarfile_says(data)
    assert [name for _, name, _ in got] == [n for n, d in MEMBERS if d not in (None, b"->")]


def test_a_ustar_long_path_is_prefix_and_name():
    data = _archive(tarfile.USTAR_FORMAT, [(LONG, b"png bytes"), ("b.txt", b"text")])
    assert data[345:350] == b"a-fol"  # tarfile did split the path into the ustar prefix field
    got, problem = _read(data)
    assert problem is None and got == _tarfile_says(data)
    assert got[0][1] == LONG


def _pax_record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n".encode()
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode() + body


def _padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % 512)


def test_pax_size_and_path_override_the_header():
    body = os.urandom(300)
    records = _pax_record("path", "from-pax/000000007.png") + _pax_record("size", str(len(body)))
    pax = tarfile.TarInfo("pax-header")
    pax.type, pax.size = tarfile.XHDTYPE, len(records)
    member = tarfile.TarInfo("short-name")  # its own size field says 0: the pax record has the size
    data = (
        pax.tobuf(tarfile.USTAR_FORMAT)
        + _padded(records)
        + member.tobuf(tarfile.USTAR_FORMAT)
        + _padded(body)
        + bytes(1024)
    )
    got, problem = _read(data)
    assert problem is None
    assert got == [(0, "from-pax/000000007.png", body)] == _tarfile_says(data)


def test_a_bad_checksum_stops_the_walk_where_it_is():
    data = bytearray(_archive(tarfile.USTAR_FORMAT, MEMBERS[:2] + MEMBERS[3:5]))
    at = _tarfile_says(bytes(data))[2][0]  # the third file's header
    data[at + 10] ^= 0x01  # one flipped bit in its name
    got, problem = _read(bytes(data))
    assert [name for _, name, _ in got] == ["000000000.png", "000000000.txt"]
    assert f"unreadable from byte {at}" in problem and "checksum" in problem


@pytest.mark.parametrize(
    ("keep", "whole", "why"),
    [
        (400, 0, "inside a tar header"),
        (512 + 1024 + 300, 1, "inside a tar header"),
        (512 + 1024 + 512 + 50, 1, "inside the data"),
        (512 + 1024 + 512 + 512, 2, "without the zero blocks"),
        (512 + 1024 + 512 + 512 + 512, 2, "without the zero blocks"),  # one zero block of two
    ],
    ids=["in-first-header", "in-second-header", "in-data", "no-end", "half-an-end"],
)
def test_a_stream_cut_short_yields_only_whole_members(keep, whole, why):
    data = _archive(tarfile.USTAR_FORMAT, [("a.png", os.urandom(1024)), ("b.png", os.urandom(100))])
    got, problem = _read(data[:keep])
    assert got == _tarfile_says(data)[:whole]
    assert problem is not None and "cut short" in problem and why in problem


def test_zero_blocks_then_garbage_is_not_a_whole_archive():
    data = _archive(tarfile.USTAR_FORMAT, [("a.png", b"x")])
    end = 1024  # header + one data block
    broken = data[:end] + bytes(512) + b"garbage" + bytes(505) + data[end + 1024 :]
    got, problem = _read(broken)
    assert [name for _, name, _ in got] == ["a.png"]
    assert problem is not None and f"unreadable from byte {end}" in problem
    assert _read(data)[1] is None


def test_numbers_and_checksums_agree_with_tarfile():
    for value in (0, 7, 8**11 - 1, 2**40, 2**62):
        field = tarfile.itn(value, 12, tarfile.GNU_FORMAT)  # octal while it fits, else base-256
        assert _number(field) == tarfile.nti(field) == value
    assert _number(tarfile.itn(-5, 8, tarfile.GNU_FORMAT)) == -5
    header = tarfile.TarInfo("ünïcode-名前.png").tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")
    assert _checksum_ok(header)
    signed = bytearray(header)
    total = sum(b - 256 if b > 127 else b for b in header[:148] + b" " * 8 + header[156:])
    signed[148:156] = b"%06o\0 " % (total & 0o777777) if total >= 0 else b"-%05o\0 " % -total
    assert total in tarfile.calc_chksums(bytes(signed)) and _checksum_ok(bytes(signed))
    ascii_edge = (b"\x7f" * 512, b"\x7f" * 511 + b"\x80")  # the most an ASCII block sums to, and one over
    for block in (bytes(512), b"\xff" * 512, os.urandom(512), bytes(range(256)) * 2, *ascii_edge):
        assert _byte_sum(block) == sum(block)

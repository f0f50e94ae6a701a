"""tailor.format.framing: raw-object frames survive round trips, tears and corruption."""

from __future__ import annotations

import random
import zlib

import numpy as np

from tailor.format import framing


def make_frames(rng: random.Random, n: int) -> tuple[bytes, list[dict[str, int]]]:
    out, meta = [], []
    pos = 0
    for _ in range(n):
        body = rng.randbytes(rng.randrange(0, 300))
        m: dict[str, int] = {
            "body_len": len(body), "raw_len": rng.randrange(2**32), "org_id": rng.randrange(2**32),
            "n_points": rng.randrange(2**32), "intake_ns": rng.randrange(2**64),
            "offset": rng.randrange(2**63), "partition": rng.randrange(2**31),
            "topic_idx": rng.randrange(2**16), "pos": pos,
        }
        f = framing.encode_frame(body, raw_len=m["raw_len"], org_id=m["org_id"],
                                 n_points=m["n_points"], intake_ns=m["intake_ns"],
                                 offset=m["offset"], partition=m["partition"],
                                 topic_idx=m["topic_idx"])
        assert len(f) == framing.frame_header(len(body)) == 52 + len(body)
        assert f.startswith(b"\x89TRF") and f.endswith(body)
        out.append(f)
        meta.append(m)
        pos += len(f)
    return b"".join(out), meta


def arr(b: bytes) -> np.ndarray:
    return np.frombuffer(b, dtype=np.uint8)


def check(res: framing.ScanResult, meta: list[dict[str, int]]) -> None:
    assert len(res.ints) == len(meta)
    for row, u, m in zip(res.ints, res.u64s, meta, strict=True):
        assert row[framing.F_POS] == m["pos"]
        assert row[framing.F_BODY_LEN] == m["body_len"]
        assert row[framing.F_RAW_LEN] == m["raw_len"] and row[framing.F_ORG] == m["org_id"]
        assert row[framing.F_NPTS] == m["n_points"] and row[framing.F_PARTITION] == m["partition"]
        assert row[framing.F_TOPIC] == m["topic_idx"]
        assert int(u[0]) == m["intake_ns"] and int(u[1]) == m["offset"]


def test_round_trip_seeded_cases() -> None:
    for seed in range(30):
        rng = random.Random(seed)
        buf, meta = make_frames(rng, rng.randrange(0, 20))
        res = framing.scan(arr(buf), len(buf), at_boundary=True)
        check(res, meta)
        assert len(res.corrupt) == 0 and res.need_more == framing.SCAN_NEED_MORE


def test_start_mid_object_finds_next_frame() -> None:
    rng = random.Random(1)
    buf, meta = make_frames(rng, 10)
    for cut in (1, 7, meta[3]["pos"] + 5, meta[3]["pos"]):
        res = framing.scan(arr(buf[cut:]), len(buf) - cut, at_boundary=False)
        first = next(i for i, m in enumerate(meta) if m["pos"] >= cut)
        shifted = [{**m, "pos": m["pos"] - cut} for m in meta[first:]]
        check(res, shifted)
        assert len(res.corrupt) == 0


def test_torn_frame_at_end_needs_more() -> None:
    rng = random.Random(2)
    buf, meta = make_frames(rng, 5)
    last = meta[-1]["pos"]
    for cut in (last + 3, last + 20, len(buf) - 1):
        res = framing.scan(arr(buf[:cut]), cut, at_boundary=True)
        check(res, meta[:-1])
        assert res.need_more == last
    # the limit only bounds where frames start: a frame crossing it is read whole
    res = framing.scan(arr(buf), last + 1, at_boundary=True)
    check(res, meta)


def test_corruption_detected_and_resynced() -> None:
    for seed in range(20):
        rng = random.Random(100 + seed)
        buf, meta = make_frames(rng, 8)
        victim = rng.randrange(8)
        start = meta[victim]["pos"]
        end = start + framing.frame_header(meta[victim]["body_len"])
        b = bytearray(buf)
        where = rng.choice([start + 4 + rng.randrange(framing.HEADER_SIZE - 4),  # header
                            start + framing.HEADER_SIZE + rng.randrange(max(1, end - start - 52))])
        if where >= end:  # empty body: hit the header instead
            where = start + 10
        b[where] ^= 1 << rng.randrange(8)
        res = framing.scan(arr(bytes(b)), len(b), at_boundary=True)
        check(res, meta[:victim] + meta[victim + 1:])
        assert list(res.corrupt) == [start]


def test_junk_at_boundary_is_corruption() -> None:
    rng = random.Random(3)
    buf, meta = make_frames(rng, 3)
    res = framing.scan(arr(b"garbage!" + buf), len(buf) + 8, at_boundary=True)
    check(res, [{**m, "pos": m["pos"] + 8} for m in meta])
    assert list(res.corrupt) == [0]


def test_crc32_equals_zlib() -> None:
    rng = random.Random(4)
    for _ in range(200):
        data = rng.randbytes(rng.randrange(0, 100))
        a, b = sorted(rng.randrange(len(data) + 1) for _ in range(2))
        assert framing.crc32(arr(data), a, b, framing._CRC_TABLE) == zlib.crc32(data[a:b])


def test_big_bodies_checked_by_zlib_as_by_the_kernel() -> None:
    """Bodies of DEFER_CRC bytes or more: a corrupt one is skipped exactly like a small one,
    and the frames found are those of the full in-kernel scan."""
    for seed in range(12):
        rng = random.Random(200 + seed)
        frames, meta, pos = [], [], 0
        for _ in range(6):
            d = framing.DEFER_CRC
            body = rng.randbytes(rng.choice([100, d - 1, d, 3 * d]))
            frames.append(framing.encode_frame(body, raw_len=len(body), org_id=7, n_points=1,
                                               intake_ns=seed, offset=pos, partition=0))
            meta.append({"pos": pos, "body_len": len(body), "raw_len": len(body), "org_id": 7,
                         "n_points": 1, "intake_ns": seed, "offset": pos, "partition": 0,
                         "topic_idx": 0})
            pos += len(frames[-1])
        buf = b"".join(frames)
        check(framing.scan(arr(buf), len(buf), at_boundary=True), meta)
        victim = rng.randrange(6)
        b = bytearray(buf)
        b[meta[victim]["pos"] + framing.HEADER_SIZE + rng.randrange(meta[victim]["body_len"])] ^= 4
        res = framing.scan(arr(bytes(b)), len(b), at_boundary=True)
        check(res, meta[:victim] + meta[victim + 1:])
        assert list(res.corrupt) == [meta[victim]["pos"]]

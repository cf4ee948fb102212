"""The disk timing models (hw/disktiming.py): the flat disk's fixed block time, and the rotating
disk's seek curve, rotational latency, transfer, batches and read-ahead buffer."""
from __future__ import annotations

import random

import pytest

from hw.disktiming import SECTOR, FlatDisk, HddDisk, HddParams, disk_timing, fit_seek_curve

P = HddParams()
IMAGE = 64 << 20          # the default image's size: 64 cylinders of the default disk
BS = 4096


def hdd(**kw: object) -> HddDisk:
    return HddDisk(HddParams(**kw), IMAGE)  # type: ignore[arg-type]


def test_default_geometry_is_the_2014_disk() -> None:
    assert P.rev_ns == 8_333_333                  # 7200 rpm
    assert P.sectors_per_track == 1953            # 120 MB/s x 8.33 ms / 512
    assert P.cylinders == 250_017                 # 500 GB / (2 heads x 1953 x 512)


def test_flat_disk_charges_block_io_per_block_whatever_came_before() -> None:
    d = FlatDisk(10_000)
    assert [d.request(b, 1, BS, w, t) for b, w, t in ((5, False, 0), (9000, True, 3), (6, False, 7))] == [10_000] * 3
    assert d.request(100, 4, BS, False, 50) == 40_000
    assert (d.stats.requests, d.stats.busy_ns, d.stats.transfer_ns, d.stats.seeks) == (4, 70_000, 70_000, 0)


def test_seek_curve_meets_its_three_points_and_grows_with_distance() -> None:
    c = fit_seek_curve(P.track_to_track_ns, P.avg_seek_ns, P.full_stroke_ns, P.cylinders)
    assert c(0) == 0
    assert c(1) == P.track_to_track_ns
    assert abs(c(round(P.cylinders / 3)) - P.avg_seek_ns) <= 1
    assert c(P.cylinders - 1) == P.full_stroke_ns
    ds = [1, 2, 3, 10, 100, 1000, 10_000, int(c.boundary) - 1, int(c.boundary) + 1, 100_000, P.cylinders - 1]
    times = [c(d) for d in ds]
    assert times == sorted(times) and len(set(times)) == len(times)
    # the two pieces meet at the boundary (same value within a nanosecond or so)
    b = c.boundary
    assert abs((c.a + c.b * b ** 0.5) - (c.c + c.e * b)) < 1e-6


@pytest.mark.parametrize("t2t, avg, full", [(1_000_000, 8_500_000, 8_000_000), (9_000_000, 8_500_000, 18_000_000),
                                            (1_000_000, 8_500_000, 40_000_000), (1_000_000, 12_000_000, 18_000_000)])
def test_seek_curve_refuses_impossible_times(t2t: int, avg: int, full: int) -> None:
    with pytest.raises(ValueError):
        fit_seek_curve(t2t, avg, full, P.cylinders)


def test_image_larger_than_the_disk_is_refused() -> None:
    with pytest.raises(ValueError, match="larger than the disk"):
        HddDisk(HddParams(capacity_bytes=32 << 20), IMAGE)


def test_rotational_latency_is_within_a_revolution() -> None:
    rng = random.Random(7)
    for _ in range(300):
        d = hdd(buffer_tracks=0)
        block, t = rng.randrange(IMAGE // BS), rng.randrange(10**12)
        ns = d.request(block, 1, BS, rng.random() < 0.5, t)
        assert 0 <= d.stats.rotation_ns < P.rev_ns
        assert ns == d.stats.overhead_ns + d.stats.seek_ns + d.stats.rotation_ns + d.stats.transfer_ns


def test_rotational_latency_follows_the_virtual_clock() -> None:
    """The same request a little later finds the platter turned on: it waits that much less."""
    a, b = hdd(), hdd()
    ta = a.request(1000, 1, BS, False, 0)
    tb = b.request(1000, 1, BS, False, 1_000_000)
    wait_a, wait_b = a.stats.rotation_ns, b.stats.rotation_ns
    assert (wait_a - wait_b) % P.rev_ns == 1_000_000
    assert ta - tb == wait_a - wait_b


def test_sequential_reads_are_cheap_random_reads_are_not() -> None:
    rng = random.Random(1)
    seq, rnd = hdd(), hdd()
    t_seq = t_rnd = 0
    for i in range(200):  # the program computes 20 us between two reads
        t_seq += seq.request(5000 + i, 1, BS, False, t_seq) + 20_000
        t_rnd += rnd.request(rng.randrange(IMAGE // BS), 1, BS, False, t_rnd) + 20_000
    assert seq.stats.buffer_hits == 199 and seq.stats.seeks <= 1
    assert rnd.stats.seeks > 150
    per_seq, per_rnd = seq.stats.busy_ns / 200, rnd.stats.busy_ns / 200
    assert per_seq < 100_000                       # the buffer: the overhead, about
    assert 4_000_000 < per_rnd < 7_000_000         # a short seek and half a revolution, on average


def test_batch_in_block_order_streams_at_the_media_rate() -> None:
    d = hdd()
    t = 10**9
    first = d.request(20_000, 1, BS, True, t)
    t += first
    rest = 0
    for b in range(20_001, 20_400):  # issued back to back: queued, no overhead, no seek, no rotation
        ns = d.request(b, 1, BS, True, t)
        t, rest = t + ns, rest + ns
    assert d.stats.queued == 399
    # 399 blocks of 8 sectors at the media rate; a track switch or two costs a skew
    media = 399 * 8 * P.rev_ns // P.sectors_per_track
    assert media <= rest <= media + 2 * P.track_to_track_ns + 2 * P.rev_ns // P.sectors_per_track


def test_queued_gap_costs_the_rotation_over_it() -> None:
    d = hdd()
    t = d.request(20_000, 1, BS, True, 0)
    ns = d.request(20_002, 1, BS, True, t)  # one block skipped, same track
    assert d.stats.seeks <= 1 and d.stats.queued == 1
    assert abs(ns - 2 * 8 * P.rev_ns / P.sectors_per_track) <= 2  # the gap's 8 sectors, then its own 8


def test_seek_time_grows_with_distance_on_a_big_image() -> None:
    d_bytes = 400 * 10**9
    costs = []
    for far in (1000, 10**5, 10**7, 9 * 10**7):   # blocks away from block 0 (a cylinder: 488 blocks)
        d = HddDisk(P, d_bytes)
        t = d.request(0, 1, BS, False, 0)
        d.request(far, 1, BS, False, t + 10**6)
        costs.append(d.stats.seek_ns)
    assert costs == sorted(set(costs))
    assert costs[0] == d.seek(2) > P.track_to_track_ns


def test_no_read_ahead_without_buffer() -> None:
    d = hdd(buffer_tracks=0)
    t = 0
    for i in range(20):
        t += d.request(5000 + i, 1, BS, False, t) + 20_000
    assert d.stats.buffer_hits == 0
    assert d.stats.rotation_ns > 15 * P.rev_ns * 9 // 10  # nearly a revolution each: the sector passed


def test_interleaved_streams_keep_their_segments() -> None:
    d = hdd()
    t = 0
    for i in range(4):  # two files read alternately, the program between them
        t += d.request(1000 + i, 1, BS, False, t) + 200_000
        t += d.request(9000 + i, 1, BS, False, t) + 200_000
    before = d.stats.buffer_hits
    t += d.request(1001, 1, BS, False, t) + 200_000  # read before: still buffered
    assert d.stats.buffer_hits == before + 1


def test_same_requests_same_times_and_state_round_trip() -> None:
    rng = random.Random(3)
    reqs = [(rng.randrange(IMAGE // BS), rng.choice([1, 1, 1, 4]), rng.random() < 0.3, rng.randrange(0, 200_000))
            for _ in range(400)]

    def run(d: HddDisk, rs: list, t: int = 0) -> tuple[list[int], int]:
        out = []
        for block, count, write, gap in rs:
            ns = d.request(block, count, BS, write, t)
            out.append(ns)
            t += ns + gap
        return out, t

    a, b = hdd(), hdd()
    assert run(a, reqs) == run(b, reqs)
    assert a.stats == b.stats
    # half-way saved and loaded into another disk: the rest takes the same times
    c = hdd()
    first, t = run(c, reqs[:200])
    d = hdd()
    d.load_state(c.save_state())
    assert run(c, reqs[200:], t) == run(d, reqs[200:], t)
    assert c.stats == d.stats


def test_clock_going_back_starts_afresh() -> None:
    d = hdd()
    t = d.request(100, 1, BS, False, 10**9)
    d.request(101, 1, BS, False, 10**9 + t + 5000)   # a buffer hit
    hits = d.stats.buffer_hits
    d.request(102, 1, BS, False, 5)                   # uptime restarted (a new kernel)
    assert d.stats.buffer_hits == hits and d.segments[-1][0] == 102 * BS // SECTOR


def test_disk_timing_picks_the_model() -> None:
    assert isinstance(disk_timing("flat", 40_000, P, IMAGE), FlatDisk)
    assert isinstance(disk_timing("hdd", 40_000, P, IMAGE), HddDisk)
    with pytest.raises(ValueError):
        disk_timing("ssd", 40_000, P, IMAGE)

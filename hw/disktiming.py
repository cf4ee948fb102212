"""How long a storage request takes: the timing model of a block device (the root disk, each
extra disk), asked once per request by the kernel's page cache and direct disk I/O.

Two models, one interface (`request(block, count, block_size, write, now_ns) -> ns`):

- `FlatDisk` (`storage.disk = "flat"`, the default): every block costs `storage.block_io`
  (10 us: an SSD), whatever was asked before. No state but its counters.
- `HddDisk` (`storage.disk = "hdd"`): a rotating disk with positioning time, in the manner of
  Ruemmler and Wilkes, "An introduction to disk drive modeling" (IEEE Computer, 1994):

      time = controller overhead + seek(cylinder distance) + rotational latency + transfer

  *Geometry.* Constant sectors per track (no zones): the media rate times one revolution,
  `spt = media_rate * rev / 512`; `heads` tracks per cylinder; cylinders from the capacity,
  `ceil(capacity / (spt * 512 * heads))`. The device's image sits at the disk's start (LBA 0:
  the outer tracks, as a first partition), so a small image on a big disk spans few cylinders
  and its seeks are short, as a small file system's are on a real one.

  *Seek.* 0 for the same cylinder; `a + b*sqrt(d)` for d below a boundary (the arm accelerates
  and coasts), `c + e*d` beyond it (it travels at full speed). The four coefficients and the
  boundary are fitted (`fit_seek_curve`) so that seek(1) is the track-to-track time, seek of a
  third of the stroke the average seek time (the mean distance between two random cylinders is
  a third of the stroke), seek of the full stroke the full-stroke time, and the two pieces meet
  with the same value and slope at the boundary.

  *Rotation.* The platter's angle is the **virtual clock** modulo one revolution, so the
  latency is deterministic: once the arm has settled, the request waits until its first sector
  comes under the head, in [0, rev).

  *Transfer* at the media rate, one sector time per 512 bytes (track and head switches inside
  a request are free: the layout's track skew hides them). Between requests the skew is there
  too: sector 0 of each track lies a track-to-track seek's worth of sectors further round than
  the previous track's, so a sequential read that goes on to the next track waits for the
  switch, not for a revolution.

  *Batches and sequential requests.* A request issued the instant the previous one completed
  (the kernel issues a batch back to back: a write-back in block order, a checkpoint's blocks)
  was queued in the drive (NCQ; Linux's block layer plugs and merges such a batch): its
  controller overhead overlapped the previous transfer. So the next block after the previous
  one pays its transfer alone (no seek, no rotation: the platter is at its first sector), and a
  block a little further on the same track pays the rotation over the gap: the elevator's
  reward. A sequential read that comes later, after the program ran a while, is served by the
  read-ahead buffer below.

  *Read-ahead buffer* (`hdd_buffer_tracks` segments of about a track each, 8 by default; 0:
  none): after a read from the media the drive goes on reading behind it, a track's worth, into
  a segment of its buffer while the head stays (until a request elsewhere, or a write, moves
  it); a read whose sectors are in a segment costs the controller overhead, or waits until the
  platter has brought its last sector in. While a reader goes on sequentially the drive keeps a
  track's worth ahead of it (adaptive prefetch: the head does not leave the stream). Segments
  are replaced least recently used first, so a few interleaved sequential streams each keep
  what was read of theirs, as in a real drive's segmented cache (each one's read-ahead stops
  when the head goes to another, though). Reading on across a track boundary ignores the
  switch time.
  Writes go to the media at once (write-through: a write is durable when the request ends,
  the persistence rule of hw/blockdev.py; the drive's volatile write cache is not modelled).

  Defaults: a 7200 rpm, 500 GB SATA desktop disk of 2014, the class of the first paper's
  machine. Seagate gave its Barracuda 7200.14 line (2012-2014; ST500DM002 the 500 GB model) an
  average seek (access) time of 8.5 ms for reads (reviews quote it, e.g. ITProPortal, 2013);
  drive specifications of the period give single-track seeks of about 1 ms and full-stroke
  seeks of 18-20 ms (Hitachi's Travelstar 5K320 specification: single track 1.0 ms read, full
  stroke 20 ms typical, on a 5400 rpm drive with a slower arm; 18 ms here for a 3.5" desktop
  one). Such disks sustain 120-160 MB/s at the outer edge: 120 MB/s here, which makes a track
  of 1953 sectors (about 1 MB) a revolution of 8.33 ms; two heads (one platter's two surfaces,
  an assumption: it only sets how many tracks share a cylinder) make 250,017 cylinders for
  500 GB. Controller overhead 50 us: an estimate, for a drive that serves sequential 4 KiB
  reads from its buffer at about 80 MB/s at queue depth 1 (the HP 97560 of Ruemmler and
  Wilkes, 1993, took 2.2 ms). Eight track segments, 8 MB: these drives had 16 to 64 MB of
  multisegmented cache. Not modelled: zones (the rate falls toward the inner tracks), seek
  settle differences between reads and writes, the volatile write cache, command reordering
  beyond a batch issued back to back.

Every model counts its requests and where their time went (`DiskTimingStats`), and saves its
state with the device (`save_state`), so that a machine snapshot resumes the same disk.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Protocol

SECTOR = 512
KINDS = ("flat", "hdd")


@dataclass
class DiskTimingStats:
    requests: int = 0       # requests asked of the model
    seeks: int = 0          # requests that moved the arm to another cylinder
    buffer_hits: int = 0    # reads served from the read-ahead buffer
    queued: int = 0         # requests issued as the previous one completed (overhead hidden)
    seek_ns: int = 0
    rotation_ns: int = 0    # rotational latency, and waits for the read-ahead to bring a sector
    transfer_ns: int = 0    # media transfer (the flat model: all of its time)
    overhead_ns: int = 0    # controller overhead
    busy_ns: int = 0        # all of it: the virtual time the requests took


class DiskTiming(Protocol):
    kind: str
    stats: DiskTimingStats

    def request(self, block: int, count: int, block_size: int, write: bool, now_ns: int) -> int:
        """`count` blocks of `block_size` bytes from block `block`, issued at virtual time
        `now_ns`: the virtual ns the request takes."""
        ...

    def save_state(self) -> dict: ...

    def load_state(self, state: dict) -> None: ...


class FlatDisk:
    """Every block costs `block_io_ns` (storage.block_io)."""

    kind = "flat"

    def __init__(self, block_io_ns: int) -> None:
        self.block_io_ns = block_io_ns
        self.stats = DiskTimingStats()

    def request(self, block: int, count: int, block_size: int, write: bool, now_ns: int) -> int:
        ns = count * self.block_io_ns
        st = self.stats
        st.requests += 1
        st.transfer_ns += ns
        st.busy_ns += ns
        return ns

    def save_state(self) -> dict:
        return {"kind": self.kind, "stats": asdict(self.stats)}

    def load_state(self, state: dict) -> None:
        self.stats = DiskTimingStats(**state["stats"])


@dataclass(frozen=True)
class HddParams:
    rpm: int = 7200
    capacity_bytes: int = 500 * 10**9
    heads: int = 2
    media_bytes_per_s: int = 120 * 10**6
    track_to_track_ns: int = 1_000_000
    avg_seek_ns: int = 8_500_000
    full_stroke_ns: int = 18_000_000
    overhead_ns: int = 50_000
    buffer_tracks: int = 8

    @property
    def rev_ns(self) -> int:
        return 60 * 10**9 // self.rpm

    @property
    def sectors_per_track(self) -> int:
        return self.media_bytes_per_s * self.rev_ns // (10**9 * SECTOR)

    @property
    def cylinders(self) -> int:
        track_bytes = self.sectors_per_track * SECTOR * self.heads
        return -(-self.capacity_bytes // track_bytes)


@dataclass(frozen=True)
class SeekCurve:
    """seek(d) = 0 (d = 0); a + b*sqrt(d) (d < boundary); c + e*d (d >= boundary), in ns."""

    a: float
    b: float
    c: float
    e: float
    boundary: float

    def __call__(self, d: int) -> int:
        if d == 0:
            return 0
        if d < self.boundary:
            return round(self.a + self.b * math.sqrt(d))
        return round(self.c + self.e * d)


def fit_seek_curve(track_to_track_ns: int, avg_ns: int, full_ns: int, cylinders: int) -> SeekCurve:
    """The curve through seek(1) = track-to-track, seek(C/3) = average, seek(C - 1) = full
    stroke (C cylinders), its two pieces meeting with equal value and slope. ValueError (one
    line) when no such curve exists."""
    if not 0 < track_to_track_ns < avg_ns < full_ns:
        raise ValueError(f"seek times must grow: track-to-track {track_to_track_ns} ns < average {avg_ns} ns "
                         f"< full stroke {full_ns} ns")
    third, full_d = cylinders / 3, cylinders - 1
    if third <= 1:
        raise ValueError(f"{cylinders} cylinders are too few for a seek curve (at least 4)")
    # Linear part through (C/3, avg) and (C-1, full).
    e = (full_ns - avg_ns) / (full_d - third)
    c = avg_ns - e * third
    # Square-root part a + b*sqrt(d) through (1, t2t), tangent to the line at d = s*s:
    # b = 2*e*s, a = c - e*s*s, a + b = t2t  =>  e*s*s - 2*e*s + (t2t - c) = 0.
    disc = 1 + (c - track_to_track_ns) / e
    if c <= track_to_track_ns or disc < 0:
        raise ValueError(f"no seek curve: the full stroke ({full_ns} ns) is too long for the average "
                         f"({avg_ns} ns) and track-to-track ({track_to_track_ns} ns) times "
                         f"(needs 3*average - full stroke > 2*track-to-track)")
    s = 1 + math.sqrt(disc)
    boundary = s * s
    if boundary > third:
        raise ValueError(f"no seek curve: the average seek ({avg_ns} ns) is too long against the track-to-"
                         f"track ({track_to_track_ns} ns) and full-stroke ({full_ns} ns) times (needs "
                         f"2*average <= full stroke + track-to-track)")
    return SeekCurve(a=c - e * boundary, b=2 * e * s, c=c, e=e, boundary=boundary)


class HddDisk:
    """A rotating disk (see the module docstring) holding `device_bytes` from its start."""

    kind = "hdd"

    def __init__(self, params: HddParams, device_bytes: int) -> None:
        if device_bytes > params.capacity_bytes:
            raise ValueError(f"the image ({device_bytes} bytes) is larger than the disk "
                             f"(storage.hdd_capacity {params.capacity_bytes} bytes)")
        self.p = params
        self.rev_ns = params.rev_ns
        self.spt = params.sectors_per_track
        self.heads = params.heads
        self.seek = fit_seek_curve(params.track_to_track_ns, params.avg_seek_ns, params.full_stroke_ns,
                                   params.cylinders)
        self.skew = -(-params.track_to_track_ns * self.spt // self.rev_ns)  # sectors passing in a switch
        self.stats = DiskTimingStats()
        self._reset()

    def _reset(self) -> None:
        """The transient state: arm at cylinder 0, nothing buffered, nothing in progress."""
        self.cylinder = 0
        self.busy_until = -1      # when the previous request completed (virtual ns)
        self.last_now = 0
        # The buffer's segments, least recently used first: [lo, hi, t0], sectors [lo, hi) of
        # the disk, sector j in at t0 + (j - lo + 1) sector times. The newest one is still
        # being filled while `filling` (the head has not left it since).
        self.segments: list[list[int]] = []
        self.filling = False

    def _sectors_ns(self, n: int) -> int:
        return n * self.rev_ns // self.spt

    def _stop_read_ahead(self, t: int) -> None:
        """The head leaves (or writes) at `t`: the filling segment keeps what was read by then,
        and the arm is where that reading had got to."""
        if self.filling:
            seg = self.segments[-1]
            seg[1] = min(seg[1], seg[0] + max(0, t - seg[2]) * self.spt // self.rev_ns)
            self.cylinder = max(seg[0], seg[1] - 1) // self.spt // self.heads
            self.filling = False

    def _rotation(self, track: int, sector: int, t: int) -> int:
        """ns from `t` until `sector` of `track` starts under the head: each track's sector 0 is
        `skew` sectors further round than the previous track's (the track skew a drive is
        formatted with, so that a read going on to the next track finds its first sector just
        after the head or arm has switched). (A request that ended within a nanosecond of it,
        rounding, is no wait, not a missed revolution.)"""
        angle = self._sectors_ns((sector + track * self.skew) % self.spt)
        wait = (angle - t % self.rev_ns) % self.rev_ns
        return 0 if wait >= self.rev_ns - 2 else wait

    def request(self, block: int, count: int, block_size: int, write: bool, now_ns: int) -> int:
        st = self.stats
        st.requests += 1
        if now_ns < self.last_now:  # the virtual clock went back (a new kernel's uptime): start afresh
            self._reset()
        self.last_now = now_ns
        first = block * block_size // SECTOR
        n = max(1, -(-count * block_size // SECTOR))
        track, sector = divmod(first, self.spt)
        # Issued the instant the previous request completed (a batch: write-back in block order,
        # a checkpoint's blocks): the drive had it queued, its overhead overlapped that transfer.
        queued = now_ns <= self.busy_until
        overhead = 0 if queued else self.p.overhead_ns
        st.queued += queued
        st.overhead_ns += overhead
        seg = next((g for g in self.segments if g[0] <= first and first + n <= g[1]), None) if not write else None
        if seg is not None:
            # in the buffer (or about to be: wait for the platter to bring it in)
            ready = seg[2] + self._sectors_ns(first + n - seg[0])
            done = max(now_ns + overhead, ready)
            st.buffer_hits += 1
            st.rotation_ns += done - now_ns - overhead
            if self.filling and seg is self.segments[-1]:
                # a sequential reader: the drive keeps a track's worth ahead of it, and its
                # segment a track's worth behind
                seg[1] = max(seg[1], first + n + self.spt)
                if seg[1] - seg[0] > 2 * self.spt:
                    drop = seg[1] - seg[0] - 2 * self.spt
                    seg[0] += drop
                    seg[2] += self._sectors_ns(drop)
            elif seg is not self.segments[-1]:  # most recently used (the filling one stays last)
                self.segments.remove(seg)
                self.segments.insert(len(self.segments) - self.filling, seg)
        else:  # from the media: seek, rotation, transfer
            t = now_ns + overhead
            self._stop_read_ahead(t)
            seek = self.seek(abs(track // self.heads - self.cylinder))
            wait = self._rotation(track, sector, t + seek)
            start = t + seek + wait
            done = start + self._sectors_ns(n)
            st.seeks += seek > 0
            st.seek_ns += seek
            st.rotation_ns += wait
            st.transfer_ns += done - start
            self.cylinder = (first + n - 1) // self.spt // self.heads
            if not write and self.p.buffer_tracks:
                # the drive reads on behind the request, a track's worth, into a segment
                lo, hi = first, first + n + self.spt
                keep = [g for g in self.segments if g[1] <= lo or g[0] >= hi]
                self.segments = keep[max(0, len(keep) - self.p.buffer_tracks + 1):] + [[lo, hi, start]]
                self.filling = True
        st.busy_ns += done - now_ns
        self.busy_until = done
        return done - now_ns

    def save_state(self) -> dict:
        return {"kind": self.kind, "stats": asdict(self.stats),
                "head": [self.cylinder, self.busy_until, self.last_now, self.filling], "segments": self.segments}

    def load_state(self, state: dict) -> None:
        self.stats = DiskTimingStats(**state["stats"])
        self.cylinder, self.busy_until, self.last_now, self.filling = state["head"]
        self.segments = [list(g) for g in state["segments"]]


def disk_timing(kind: str, block_io_ns: int, hdd: HddParams, device_bytes: int) -> DiskTiming:
    """The timing model `kind` ("flat" or "hdd") for a device of `device_bytes`."""
    if kind == "flat":
        return FlatDisk(block_io_ns)
    if kind == "hdd":
        return HddDisk(hdd, device_bytes)
    raise ValueError(f"unknown disk timing model {kind!r} (one of {', '.join(KINDS)})")

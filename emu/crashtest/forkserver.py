"""The fork-server method of a campaign (the default; `--method rerun` runs each point from boot).

One run of the program (after the reference) reaches every cut point in order and forks the whole
emu process there, as a fuzzer's fork server does: the copy (guest RAM, Unicorn and the kernel,
all copy-on-write) cuts the power, restarts and checks; the original goes on to the next point.
No point re-runs the prefix before it.

- An instruction point N: the run pauses at the last block boundary at or before N
  (`Machine.resume_run(until=N)`, which the guest does not notice) and forks; the copy arms the
  cut (`Machine.cut_power_at(N)`) and runs on: from the fork on it takes the code path of a run
  built with `--power-fail-at N`, so its cut is the same.
- A persistence event K: the cache model asks before failing at its armed event
  (`CacheModel.at_fail_event`); the fork happens right there, deep in guest or kernel work; the
  copy answers "fail" (the cut of `--power-fail-at-event K`), the original arms the next event and
  lets this one happen.

The forking run keeps its disk and SCM media private (`Machine(private_storage=True)`: copy-on-
write mappings, never written to files), so nothing the original does later reaches a copy; the
copy writes what survived into the point's state directory (`Machine.save_storage`) and from
there is a point like any other (`finish_point`: media faults, restart, checks). It hands its
record back through a file and exits. At most `workers` copies live at once; one that outlives
the timeout (from the reference's wall time) is killed and its point reported so; one that dies
is reported with its status. The reproducing commands of a point are the rerun method's: the
same cut.
"""
from __future__ import annotations

import json
import os
import select
import signal
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any

from emu.crashtest.restart import _capture_console
from emu.crashtest.runner import Campaign, finish_point, new_point, probed_kernel, watch_block_writes

Job = tuple[int, str, int]


def point_timeout(c: Campaign) -> float:
    """Seconds a point may take (`--point-timeout`, else: a restart replays at most the whole
    run, and the checks read the image; generous, since the points running at once share the
    machine)."""
    if c.point_timeout_s is not None:
        return c.point_timeout_s
    return 120.0 + 20.0 * float(c.reference.get("wall_s", 10.0))


class ForkServer:
    def __init__(self, c: Campaign, jobs: list[Job], workers: int,
                 progress: Callable[[dict[str, Any]], None] | None = None, timeout_s: float | None = None) -> None:
        self.c = c
        self.jobs = jobs
        self.instructions = sorted((j for j in jobs if j[1] == "instruction"), key=lambda j: j[2])
        self.events = sorted((j for j in jobs if j[1] == "event"), key=lambda j: j[2])
        self.next_event = 0
        self.workers = max(1, workers)
        self.progress = progress
        self.timeout_s = timeout_s if timeout_s is not None else point_timeout(c)
        self.live: dict[int, tuple[Job, float]] = {}   # pid -> (point, start time)
        self.pidfds: dict[int, int] = {}               # pid -> its pidfd (readable once it ended)
        self.results: dict[int, dict[str, Any]] = {}
        self.child: Job | None = None                  # set in a copy: the point it cuts
        self.machine: Any = None
        self.error: BaseException | None = None        # raised in a callback from C
        self.outbox = c.dir / "results"

    # -- the original ---------------------------------------------------------------------------
    def run(self) -> list[dict[str, Any]]:
        from vmm.machine import Machine

        c = self.c
        cfg = c.config()
        self.outbox.mkdir(exist_ok=True)
        scratch = c.dir / "forking-run"  # its media files: created zeroed, never written
        m = Machine(c.start_image, cfg, kernel=probed_kernel(c.kernel, cfg), console=_capture_console(),
                    media_dir=scratch, private_storage=True)
        watch_block_writes(m)
        self.machine = m
        if self.events:
            m.cache.fail_at_event(self.events[0][2])
            m.cache.at_fail_event(self._at_event)
        r = None
        try:
            try:
                r = m.boot(c.argv)
                for job in self.instructions:
                    if self.child is not None or r is not None:
                        break
                    r = m.resume_run(until=job[2])
                    if self.child is not None or r is not None:
                        break
                    if self._fork(job):
                        m.cut_power_at(job[2])
                        r = m.resume_run()
                if self.child is None and r is None and self.next_event < len(self.events):
                    r = m.resume_run()  # on to the event points left (past the last one: no need)
            except BaseException as e:
                if self.child is not None:
                    self._child_exit(None, e)
                raise
            if self.child is not None:
                self._child_exit(r, None)
            if self.error is not None:
                raise self.error
            self._reap(0)
        finally:
            if self.child is None:
                for pid in list(self.live):
                    os.kill(pid, signal.SIGKILL)
                self._reap(0)
                shutil.rmtree(scratch, ignore_errors=True)
                shutil.rmtree(self.outbox, ignore_errors=True)
        ran = r.instructions if r is not None else m.cpu.icount
        for job in self.jobs:
            if job[0] not in self.results:  # the forking run ended before it: it differs from the reference
                self._record(self._failed(job, f"the forking run ended before this point ({ran:,} instructions, "
                                               f"the reference {c.reference['instructions']:,}): not deterministic"))
        return [self.results[j[0]] for j in sorted(self.jobs)]

    def _at_event(self) -> bool:
        """The cache model is at the armed event: fork; the copy fails there, the original arms
        the next event point and goes on. (Called from C, which cannot take an exception: the
        original keeps one for after the run, a copy exits.)"""
        if self.child is not None:
            return True
        try:
            job = self.events[self.next_event]
            self.next_event += 1
            nxt = self.events[self.next_event][2] if self.next_event < len(self.events) else 0
            self.machine.cache.fail_at_event(nxt)
            return self._fork(job)
        except BaseException as e:  # noqa: BLE001
            if self.child is not None:
                os._exit(70)
            self.error = self.error or e
            return False

    def _fork(self, job: Job) -> bool:
        """Fork at `job`'s point once a place is free. True in the copy."""
        self._reap(self.workers - 1)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self.child = job
            self.live.clear()
            for fd in self.pidfds.values():
                os.close(fd)
            self.pidfds.clear()
            if job[1] == "instruction" and self.machine.cache is not None:
                self.machine.cache.fail_at_event(0)  # this copy is cut at its instruction only
            _, state = new_point(self.c, *job)
            state.mkdir(parents=True, exist_ok=True)
            self.machine.media_dir = state  # the console record of the cut goes there
            return True
        self.live[pid] = (job, time.monotonic())
        self.pidfds[pid] = os.pidfd_open(pid)
        return False

    def _reap(self, keep: int) -> None:
        """Wait until at most `keep` copies live, collecting their records; kill the late. (A
        copy's end wakes this at once: its pidfd becomes readable.)"""
        while len(self.live) > keep:
            now = time.monotonic()
            for pid, (job, t0) in list(self.live.items()):
                if now - t0 > self.timeout_s:
                    if select.select([self.pidfds[pid]], [], [], 0)[0]:  # it ended in time after all
                        self._record(self._collect(job, self._wait(pid)))
                        continue
                    os.kill(pid, signal.SIGKILL)
                    self._wait(pid)
                    self._record(self._failed(job, f"the point ran longer than {self.timeout_s:.0f} s and was killed"))
            if len(self.live) <= keep:
                return
            first = min(t0 for _, t0 in self.live.values())
            fds = {self.pidfds[pid]: pid for pid in self.live}
            ready, _, _ = select.select(list(fds), [], [], max(0.0, first + self.timeout_s - now) + 0.01)
            for fd in ready:
                pid = fds[fd]
                job = self.live[pid][0]
                self._record(self._collect(job, self._wait(pid)))

    def _wait(self, pid: int) -> int:
        """A copy's exit status, once it has ended; it is forgotten."""
        _, status = os.waitpid(pid, 0)
        del self.live[pid]
        os.close(self.pidfds.pop(pid))
        return status

    def _collect(self, job: Job, status: int) -> dict[str, Any]:
        out = self.outbox / f"{job[0]}.json"
        if os.waitstatus_to_exitcode(status) == 0 and out.exists():
            p = json.loads(out.read_text())
            out.unlink()
            return p
        code = os.waitstatus_to_exitcode(status)
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        return self._failed(job, f"the point's process {how} before it reported")

    def _failed(self, job: Job, why: str) -> dict[str, Any]:
        p, _ = new_point(self.c, *job)
        p.update(reasons=[why], reason=why, state_dir=None)
        return p

    def _record(self, p: dict[str, Any]) -> None:
        self.results[p["index"]] = p
        if self.progress:
            self.progress(p)

    # -- a copy -------------------------------------------------------------------------------
    def _child_exit(self, r: Any, error: BaseException | None) -> None:
        """In a copy, after its cut: finish the point, hand its record over, exit (never returns)."""
        code = 0
        try:
            c, m = self.c, self.machine
            assert self.child is not None
            p, state = new_point(c, *self.child)

            def cut() -> tuple[Any, Any, bytes]:
                if error is not None:
                    raise error
                m.save_storage(state)
                shutil.copyfile(c.machine_file, state / "config.json")
                if r.power_failed:
                    (state / "report.json").write_text(json.dumps(r.power_report, indent=2) + "\n")
                return r, m, bytes(m.console.captured[1])

            p = finish_point(c, p, state, cut)
            tmp = self.outbox / f".{self.child[0]}.json"
            tmp.write_text(json.dumps(p))
            tmp.rename(self.outbox / f"{self.child[0]}.json")
        except BaseException:  # noqa: BLE001  (reported by the original as a dead point)
            import traceback

            traceback.print_exc()
            code = 70
        finally:
            os._exit(code)

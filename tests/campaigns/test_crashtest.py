"""emu crashtest: a crash campaign on a machine without checkpointing finds the losses it should,
classifies the cuts, writes its JSON and prints commands that reproduce a failure; the tree and
output comparisons, the cut points and the restart plug on their own."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from emu import crashtest as ct
from emu.cli import main as cli_main
from vmm.config import apply_overrides, default_machine
from vmm.errors import EXIT_POWER_FAILED
from guestkernel.kernel import Kernel

ROOT = Path(__file__).parents[2]
SCRIPT = "mkdir -p /tmp/w && echo hello > /tmp/w/f && cat /data/tree/README | wc -c"


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("crash") / "c"
    cmd = [sys.executable, "-m", "emu.cli", "crashtest", "--dir", str(d), "--level", "persist", "--points", "6",
           "--seed", "7", "--events-of-writeback", "--jobs", "2", "--", "/bin/sh", "-c", SCRIPT]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    return d, p, json.loads((d / "crashtest.json").read_text())


def test_campaign_without_checkpointing_finds_losses(campaign):  # type: ignore[no-untyped-def]
    d, p, doc = campaign
    assert p.returncode == 1, p.stderr
    assert f"campaign in {d}" in p.stderr and "crash campaign" in p.stderr
    ref = doc["reference"]
    assert ref["exit_code"] == 0 and ref["stdout"] == "4977\n" and ref["control"] is None
    assert 0 <= ref["events_before_shutdown"] < ref["events"]
    assert doc["restart"] == "cold-boot" and doc["program"] == ["/bin/sh", "-c", SCRIPT]
    points = doc["points"]
    insn = [q for q in points if q["cut"]["kind"] == "instruction"]
    events = [q for q in points if q["cut"]["kind"] == "event"]
    assert len(insn) == 6 and all(1 <= q["cut"]["at"] <= ref["instructions"] for q in insn)
    assert [q["cut"]["at"] for q in events] == list(range(ref["events_before_shutdown"] + 1, ref["events"] + 1))
    for q in points:
        assert set(q) >= {"index", "cut", "phase", "passed", "reason", "reasons", "checks", "reproduce", "state_dir"}
        assert q["phase"] in ct.PHASES and q["power_failed"]
        assert q["passed"] == (not q["reasons"]) and q["reason"] == (q["reasons"] or [None])[0]
        assert len(q["reproduce"]) == 3
    assert sum(not q["passed"] for q in points) >= 1
    # Cut after the program finished (all its output is there), inside the final write-back.
    for q in events:
        assert q["phase"] == "write-back"
        assert q["stdout_before_cut"] == ref["stdout_bytes"] and q["checks"]["stdout"]
        assert not q["passed"] and not q["checks"]["tree"]  # the page cache never reached storage
    # Cut before the output: nothing to resume it, so it is lost.
    assert all(q["phase"] in ("user", "syscall") for q in insn)
    assert any(not q["checks"]["stdout"] for q in insn)
    s = doc["summary"]
    assert s["tried"] == len(points) and s["passed"] + s["failed"] == s["tried"]
    assert s["by_phase"]["write-back"]["failed"] == len(events) and s["by_phase"]["checkpoint"]["tried"] == 0


def same_points(a: dict, b: dict) -> None:
    """Two campaigns' points agree on everything but where their files are."""
    assert len(a["points"]) == len(b["points"])
    for p, q in zip(a["points"], b["points"]):
        strip = lambda x: {k: v for k, v in x.items() if k not in ("reproduce", "state_dir")}  # noqa: E731
        assert strip(p) == strip(q), p["index"]
        assert [c.replace(a["campaign"], "C") for c in p["reproduce"]] == [c.replace(b["campaign"], "C") for c in q["reproduce"]]


def test_the_fork_server_and_rerunning_give_the_same_points(campaign, tmp_path):  # type: ignore[no-untyped-def]
    """The default method forks one run at every point; rerunning each point from boot must
    find exactly the same (phases, checks, reasons, instruction and event counts)."""
    d, _, doc = campaign
    assert doc["method"] == "fork"
    d2 = tmp_path / "rerun"
    cmd = [sys.executable, "-m", "emu.cli", "crashtest", "--dir", str(d2), "--level", "persist", "--points", "6",
           "--seed", "7", "--events-of-writeback", "--jobs", "2", "--method", "rerun", "--", "/bin/sh", "-c", SCRIPT]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    assert p.returncode == 1, p.stderr
    same_points(doc, json.loads((d2 / "crashtest.json").read_text()))


def test_cut_on_a_syscall_is_classified_syscall(campaign, tmp_path):  # type: ignore[no-untyped-def]
    """A cut after exactly the instruction count of the `write` of the output: the write happened."""

    class Marking(Kernel):
        def __init__(self) -> None:
            super().__init__()
            self.writes: list[int] = []

        def syscall(self) -> None:
            if self.cpu.syscall_args()[0] == 1:
                self.writes.append(self.cpu.icount)
            super().syscall()

    d, _, doc = campaign
    c = ct.Campaign(d, doc["program"], None, ct.ColdBootRestart(), keep="none")
    import shutil

    from vmm.machine import Machine

    state = tmp_path / "mark"
    state.mkdir()
    shutil.copyfile(c.start_image, state / "disk.img")
    k = Marking()
    Machine(state / "disk.img", c.config(), kernel=k, console=ct._capture_console(), media_dir=state).run(c.argv)
    at = k.writes[-1]
    c.ref_tree, c.ref_stdout, c.reference = json.loads((d / "reference" / "tree.json").read_text()), b"4977\n", doc["reference"]
    on, before = ct.run_point(c, 90, "instruction", at), ct.run_point(c, 91, "instruction", at - 1)
    assert on["phase"] == "syscall" and on["stdout_before_cut"] == 5
    assert before["phase"] == "user" and before["stdout_before_cut"] == 0


def test_printed_commands_reproduce_a_failure(campaign):  # type: ignore[no-untyped-def]
    d, _, doc = campaign
    ref_tree = json.loads((d / "reference" / "tree.json").read_text())
    # a write-back cut that leaves a damaged file system, and an instruction cut
    wb = [q for q in doc["points"] if q["phase"] == "write-back" and not q["checks"]["fsck"]]
    picks = [(wb or [q for q in doc["points"] if q["phase"] == "write-back"])[0],
             next(q for q in doc["points"] if q["cut"]["kind"] == "instruction")]
    for q in picks:
        outs = []
        for i, cmd in enumerate(q["reproduce"]):
            r = subprocess.run(shlex.split(cmd), cwd=ROOT, capture_output=True, check=False)
            assert r.returncode == (EXIT_POWER_FAILED if i == 1 else 0), r.stderr  # the cut run says it was cut
            outs.append(r.stdout)
        repro = Path(shlex.split(q["reproduce"][0])[-1])
        assert len(outs[1]) == q["stdout_before_cut"] and outs[2] == b""
        # the same bytes on storage as the campaign's point, hence the same failure
        assert (repro / "disk.img").read_bytes() == (Path(q["state_dir"]) / "disk.img").read_bytes()
        reasons = [ct.diff_output(b"4977\n", outs[1] + outs[2])]
        diffs = ct.diff_trees(ref_tree, ct.image_tree(repro / "disk.img"))
        reasons.append(f"tree: {diffs[0]}" + (f" (and {len(diffs) - 1} more)" if len(diffs) > 1 else "") if diffs else None)
        reasons.append(ct.fsck(repro / "disk.img"))
        assert [x for x in reasons if x] == q["reasons"]


def tree_of(root: Path, files: dict[str, bytes], modes: dict[str, int] | None = None) -> dict:  # type: ignore[type-arg]
    for name, data in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        os.chmod(p, (modes or {}).get(name, 0o644))
    return ct.host_tree(root)


def test_tree_diff(tmp_path):  # type: ignore[no-untyped-def]
    files = {"a/x": b"hello\n", "a/y": b"\x00" * 100, "b": b"z"}
    ref = tree_of(tmp_path / "ref", files)
    os.symlink("a/x", tmp_path / "ref" / "link")
    ref = ct.host_tree(tmp_path / "ref")
    assert ref["/a"]["type"] == "dir" and ref["/link"] == {"type": "symlink", "target": "a/x", "mode": ref["/link"]["mode"], "size": 3}
    assert ct.diff_trees(ref, ref) == []

    tree_of(tmp_path / "byte", {**files, "a/y": b"\x00" * 50 + b"\x01" + b"\x00" * 49})  # same size
    os.symlink("a/x", tmp_path / "byte" / "link")
    assert ct.diff_trees(ref, ct.host_tree(tmp_path / "byte")) == ["/a/y: content differs"]

    tree_of(tmp_path / "miss", {"a/y": files["a/y"], "b": b"z"})
    os.symlink("a/y", tmp_path / "miss" / "link")
    assert ct.diff_trees(ref, ct.host_tree(tmp_path / "miss")) == [
        "/a/x: missing (file)", "/link: symlink to 'a/y' instead of 'a/x'"]

    tree_of(tmp_path / "mode", files, {"b": 0o600})
    os.symlink("a/x", tmp_path / "mode" / "link")
    (tmp_path / "mode" / "extra").mkdir()
    assert ct.diff_trees(ref, ct.host_tree(tmp_path / "mode")) == ["/b: mode 0600 instead of 0644", "/extra: unexpected dir"]


def test_output_diff_and_cut_points():  # type: ignore[no-untyped-def]
    assert ct.diff_output(b"abc\n", b"abc\n") is None
    assert ct.diff_output(b"abc\n", b"") == "stdout: 0 bytes instead of 4, first difference at byte 0"
    assert ct.diff_output(b"abc\n", b"abd\n").endswith("at byte 2")
    pts = ct.instruction_points(1_000_000, 10, seed=3)
    assert pts == ct.instruction_points(1_000_000, 10, seed=3) != ct.instruction_points(1_000_000, 10, seed=4)
    assert len(pts) == 10 and pts == sorted(pts) and 1 <= pts[0] and pts[-1] <= 1_000_000
    assert all(i * 100_000 < x <= (i + 1) * 100_000 for i, x in enumerate(pts))  # one per slot
    assert ct.instruction_points(5, 10, seed=1) == [1, 2, 3, 4, 5]


class NoRestartKernel(Kernel):
    restart_from_state = None  # a kernel that cannot resume anything


def test_restart_is_chosen_by_the_kernel_and_the_machine(tmp_path):  # type: ignore[no-untyped-def]
    off = default_machine()
    on = apply_overrides(off, ["checkpoint.enabled=true"])
    assert type(ct.choose_restart(None, config=off)) is ct.ColdBootRestart
    r = ct.choose_restart(None, config=on)
    assert type(r) is ct.MachineRestart and r.resumes
    assert type(ct.choose_restart("tests.campaigns.test_crashtest:NoRestartKernel", config=on)) is ct.ColdBootRestart
    assert type(ct.choose_restart(None, "machine")) is ct.MachineRestart
    cmd = ct.ColdBootRestart().command(["emu"], tmp_path, ["/bin/x"])
    assert cmd == ["emu", "run", "--state", str(tmp_path), "--", "/bin/true"]
    assert r.command(["emu"], tmp_path, ["/bin/x"]) == ["emu", "restart", str(tmp_path)]
    # A machine restart on a machine that never checkpointed says so in one line.
    from images.build import default_image

    ct.sparse_copy(default_image(), tmp_path / "disk.img")
    with pytest.raises(ct.EmuError, match="needs checkpointing"):
        r(tmp_path, ["/bin/true"], off)


def test_usage_errors_exit_2(capsys, tmp_path):  # type: ignore[no-untyped-def]
    assert cli_main(["crashtest", "--dir", str(tmp_path / "a"), "--level", "fast", "--events-of-writeback", "--", "/bin/true"]) == 2
    assert cli_main(["crashtest", "--dir", str(tmp_path / "b")]) == 2
    assert cli_main(["crashtest", "--dir", str(tmp_path / "c"), "--", "/bin/nonexistent"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert not (tmp_path / "c").exists()  # no campaign left behind
    assert len(err) == 3 and all(line.startswith("emu: error: ") for line in err)
    assert "needs a cache model" in err[0] and "nothing to run" in err[1] and "not found" in err[2]


def rerun(state_dir, argv, config):  # type: ignore[no-untyped-def]
    """A stand-in restart that 'resumes' by running the whole program again on what survived."""
    m = ct.machine_on_state(state_dir, config)
    r = m.run(argv)
    return bytes(m.console.captured[1]), bytes(m.console.captured[2]), r.exit_code


def misbehaving(state_dir, argv, config):  # type: ignore[no-untyped-def]
    """A restart whose first point's copy dies and whose second hangs; the rest re-run."""
    import time

    if Path(state_dir).name.startswith("p0001-"):
        os._exit(9)
    if Path(state_dir).name.startswith("p0002-"):
        time.sleep(600)
    return rerun(state_dir, argv, config)


def test_fork_method_reports_a_dead_and_a_hung_point(tmp_path, capsys):  # type: ignore[no-untyped-def]
    d = tmp_path / "c"
    code = cli_main(["crashtest", "--dir", str(d), "--level", "persist", "--points", "4", "--jobs", "2",
                     "--point-timeout", "5", "--restart", "tests.campaigns.test_crashtest:misbehaving",
                     "--", "/bin/sh", "-c", SCRIPT])
    doc = json.loads((d / "crashtest.json").read_text())
    assert code == 1 and doc["method"] == "fork"
    by = {q["index"]: q for q in doc["points"]}
    assert by[1]["reason"] == "the point's process exited with status 9 before it reported"
    assert by[2]["reason"] == "the point ran longer than 5 s and was killed"
    assert by[3]["passed"] and by[4]["passed"]
    assert len(doc["points"]) == 4 and not (d / "results").exists()
    code = cli_main(["crashtest", "--dir", str(tmp_path / "r"), "--method", "rerun", "--point-timeout", "5", "--", "/bin/true"])
    assert code == 2 and "--point-timeout bounds the fork method's points" in capsys.readouterr().err


def test_plugged_restart_can_pass(tmp_path, capsys):  # type: ignore[no-untyped-def]
    """Through --restart MODULE:FUNC: a cut before the program wrote anything, then a re-run,
    gives the reference's output and tree: the point passes (the harness can say yes)."""
    d = tmp_path / "c"
    code = cli_main(["crashtest", "--dir", str(d), "--level", "persist", "--points", "3", "--jobs", "2",
                     "--restart", "tests.campaigns.test_crashtest:rerun", "--", "/bin/sh", "-c", SCRIPT])
    doc = json.loads((d / "crashtest.json").read_text())
    assert doc["restart"] == "tests.campaigns.test_crashtest:rerun" and doc["reference"]["control"] is not None  # re-running doubles the output
    early = [q for q in doc["points"] if q["stdout_before_cut"] == 0]
    assert early and all(q["passed"] for q in early)
    assert all(q["state_dir"] is None for q in early)  # --keep failed
    assert code == (0 if doc["summary"]["failed"] == 0 else 1)
    assert "warning: restarting the finished reference fails the checks" in capsys.readouterr().err


def test_the_printed_restart_command_parses(tmp_path, capsys):
    """restart_command's line reaches the restart itself (it once stopped at "--state required":
    the program's positional swallowed the options)."""
    from emu.crashtest.restart import restart_command, restart_main

    cmd = restart_command(tmp_path / "nowhere", ["/bin/sh", "-c", "echo x"], "cold", None)
    assert cmd[1:4] == ["-m", "emu.crashtest", "restart"]
    assert restart_main(cmd[3:]) != 0
    err = capsys.readouterr().err
    assert "config.json" in err and "required" not in err

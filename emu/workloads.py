"""Named guest workloads on the default image: the programs the first paper measured (grep, tar,
gzip; on the source tree, and as in its Fig. 8 on one large file: `-file`, the 2 MiB corpus) plus
a shell script that changes directories. Crash campaigns (tests) and the checkpoint
benchmark (bench/) run these by name, so both exercise the same command lines."""
from __future__ import annotations

DIR_SCRIPT = (
    "for i in 1 2 3 4; do mkdir -p /tmp/d$i/a/b && echo file $i > /tmp/d$i/a/b/f && mv /tmp/d$i /tmp/e$i; done; "
    "rm -r /tmp/e2; mv /tmp/e3/a/b/f /tmp/e3/g; rmdir /tmp/e3/a/b /tmp/e3/a; "
    "rmdir /tmp/e1 2>/dev/null || echo e1 not empty; mkdir /tmp/e4/new; ls -R /tmp; echo done"
)

WORKLOADS: dict[str, list[str]] = {
    "grep": ["/bin/grep", "-r", "-n", "include", "/data/tree"],
    "grep-file": ["/bin/grep", "-c", "-i", "memory", "/data/corpus.txt"],
    "gzip": ["/bin/gzip", "-9", "-k", "/data/corpus.txt"],
    "gzip-1m": ["/bin/sh", "-c", "head -c 1048576 /data/corpus.txt | gzip -9 > /tmp/corpus-1m.gz"],
    "tar-cf": ["/bin/tar", "cf", "/tmp/tree.tar", "-C", "/data", "tree"],
    "tar-cf-file": ["/bin/tar", "cf", "/tmp/corpus.tar", "-C", "/data", "corpus.txt"],
    "tar-xf": ["/bin/sh", "-c", "tar cf /tmp/t.tar -C /data tree && mkdir /tmp/x && tar xf /tmp/t.tar -C /tmp/x"],
    "tar-czf": ["/bin/tar", "czf", "/tmp/tree.tgz", "-C", "/data", "tree"],
    "dirs": ["/bin/sh", "-c", DIR_SCRIPT],
}


def workload(name: str) -> list[str]:
    try:
        return list(WORKLOADS[name])
    except KeyError:
        raise KeyError(f"no workload {name!r} (have: {', '.join(WORKLOADS)})") from None

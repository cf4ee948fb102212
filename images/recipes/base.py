"""Default guest image: dash as /bin/sh, a few coreutils/grep/sed/tar/gzip, procps (free, vmstat,
ps), util-linux's mkswap, swapon and swapoff, and /data."""

from images.build import Recipe
from images.dataset import DEFAULTS

INIT = r"""#!/bin/sh
# /sbin/init of the emu "base" image: a short demo over /data, then exit 0.
PATH=/bin
export PATH
cd /
echo "emu base image: init running"
echo "corpus bytes: $(wc -c < /data/corpus.txt)"
echo "corpus lines: $(wc -l < /data/corpus.txt)"
echo "grep -c memory: $(grep -c memory /data/corpus.txt)"
echo "grep -ic checkpoint: $(grep -ic checkpoint /data/corpus.txt)"
echo "grep -Ec persistent: $(grep -Ec '[Pp]ersistent [a-z]+' /data/corpus.txt)"
echo "gzip -9 size: $(gzip -9 -c /data/corpus.txt | wc -c)"
tar cf /tmp/tree.tar -C /data tree && echo "tar entries: $(tar tf /tmp/tree.tar | wc -l)"
tar czf /tmp/tree.tgz -C /data tree && echo "tgz entries: $(tar tzf /tmp/tree.tgz | wc -l)"
echo "tree .c files: $(find /data/tree -name '*.c' | wc -l)"
ls /data
rm -f /tmp/tree.tar /tmp/tree.tgz
echo "emu base image: done"
exit 0
"""

PASSWD = """root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:user:/home/user:/bin/sh
"""

GROUP = """root:x:0:
user:x:1000:
"""

RECIPE = Recipe(
    name="base",
    binaries={
        "dash": ("/bin/sh", "/bin/dash"),
        **{tool: f"/bin/{tool}" for tool in
           ("grep", "tar", "gzip", "cat", "ls", "mkdir", "rm", "wc", "sed", "find", "date",
            "sort", "head", "tail", "tr", "cut", "uniq", "cp", "mv", "ln", "chmod", "touch", "rmdir",
            "true", "false", "echo", "sleep", "env", "stat", "md5sum", "cmp", "diff", "xargs", "uname", "od", "expr", "basename", "dirname", "seq", "sync",
            "readlink", "free", "vmstat", "ps")},
        # util-linux: lending a file on storage as memory (guestkernel/swap.py)
        **{tool: f"/sbin/{tool}" for tool in ("mkswap", "swapon", "swapoff")},
    },
    files={
        "/sbin/init": INIT,
        "/etc/passwd": PASSWD,
        "/etc/group": GROUP,
        "/etc/hostname": "emu\n",
        "/etc/profile": "PATH=/bin\nexport PATH\n",
    },
    modes={"/sbin/init": 0o755, "/root": 0o700},
    dirs={
        "/tmp": 0o1777,
        "/dev": 0o755,
        "/proc": 0o755,
        "/root": 0o700,
        "/home": 0o755,
        "/home/user": 0o755,
        "/data": 0o755,
        "/etc": 0o755,
        "/sbin": 0o755,
    },
    owners={"/home/user": (1000, 1000)},
    programs={"/bin/pmemlog": "pmemlog.c", "/bin/lendhog": "lendhog.c"},
    params=dict(DEFAULTS),
)

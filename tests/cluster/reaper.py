#!/usr/bin/python3
"""Run one command as a child subreaper and reap everything it leaves behind.

Usage: reaper.py COMMAND [ARGS...]

Why: PID 1 of the test machine does not necessarily reap orphans. When a
"host" is killed (SIGKILL to every process of its network namespace), the
postmaster's children and the postmaster itself are orphaned at once; left as
zombies they would keep their PIDs "alive" for kill(pid, 0), and the next
postmaster would refuse to start because postmaster.pid names a (zombie)
process. The harness therefore starts every long-running host process through
this tiny reaper. The reaper itself stays in the root network namespace, so
`ip netns pids` (and therefore "kill the host") never sees it; it exits with
the command's status once no descendant is left.
"""
import ctypes
import os
import signal
import sys

PR_SET_CHILD_SUBREAPER = 36


def main(argv):
    if not argv:
        print("usage: reaper.py COMMAND [ARGS...]", file=sys.stderr)
        return 2
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("reaper: prctl(PR_SET_CHILD_SUBREAPER) failed: errno %d" % ctypes.get_errno(),
              file=sys.stderr)
    child = os.fork()
    if child == 0:
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)

    def forward(signum, _frame):
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    status = 0
    # Bounded by the number of descendants: os.wait() raises ChildProcessError
    # once none is left, which ends the loop.
    while True:
        try:
            pid, wstatus = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid == child:
            status = os.waitstatus_to_exitcode(wstatus)
    return status if status >= 0 else 128 - status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

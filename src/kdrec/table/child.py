"""Entry point of one table job: ``python -m kdrec.table.child <table pid> <stage> <overrides>``.

It asks the kernel to kill it when the table process (strictly: the worker thread that started
it) ends, however that ends (Ctrl-C, a kill, a crash), so no job outlives its table and nothing it
half-wrote is ever counted as done; then it runs the kdrec stage in this process."""

from __future__ import annotations

import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main() -> None:
    parent = int(sys.argv[1])
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: Ctrl-C still reaches the job's process group
        pass
    if os.getppid() != parent:  # the table ended before the prctl took effect
        sys.exit(1)
    sys.argv = ["kdrec", *sys.argv[2:]]
    from kdrec.cli import main as cli

    cli()


if __name__ == "__main__":
    main()

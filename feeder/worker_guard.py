"""Worker processes must not outlive the feeder: a ``ProcessPoolExecutor`` worker whose parent
is SIGKILLed blocks forever on its task queue (it holds the queue's write end itself, so it
never sees end-of-file). Each worker therefore watches its parent and exits when it is gone."""

from __future__ import annotations

import os
import threading

POLL_S = 0.5


def _watch(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        threading.Event().wait(POLL_S)
    os._exit(1)  # the parent is gone: nobody will read what this process would produce


def exit_with_parent(parent_pid: int) -> None:
    """Pool initializer: start the watch (pass the parent's ``os.getpid()``)."""
    threading.Thread(target=_watch, args=(parent_pid,), name="parent-watch",
                     daemon=True).start()

"""Ctrl-C and SIGTERM during training: the training process finishes its step, writes a
checkpoint and stops; DataLoader workers ignore both, so the process-group signals of terminals,
``timeout``, Slurm and container runtimes cannot kill a worker before the checkpoint is written.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Iterator

INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """The first SIGINT/SIGTERM received inside ``catching()``, kept in ``signal`` for the training
    loop to act on at the end of its step; a second one aborts at once (KeyboardInterrupt)."""

    def __init__(self, announce: bool = True) -> None:
        self.signal: int | None = None
        self.announce = announce

    def _request(self, signum: int, frame) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum
        if self.announce:
            print(f"\nipassr: {signal.Signals(signum).name} received: finishing the step and "
                  "writing a checkpoint (send again to abort)", file=sys.stderr)

    @contextlib.contextmanager
    def catching(self, enabled: bool = True) -> Iterator[None]:
        """Route SIGINT/SIGTERM here while inside (only from the main thread, where Python
        delivers signals); the previous handlers come back on exit."""
        if not enabled or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.signal(s, self._request) for s in INTERRUPTS}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)



def ignore_interrupts(worker_id: int) -> None:
    """Workers leave Ctrl-C and SIGTERM to the training process, which checkpoints and stops them.

    Terminals, ``timeout``, Slurm and container runtimes signal every process of the job; a
    worker killed by it would make the training process fail instead of checkpointing. Workers
    are born with the signals blocked (``interrupts_blocked_while_workers_start``), so none
    arrives before this runs.
    """
    for signum in INTERRUPTS:
        signal.signal(signum, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, INTERRUPTS)


@contextlib.contextmanager
def interrupts_blocked_while_workers_start() -> Iterator[None]:
    """Block SIGINT/SIGTERM in this thread while DataLoader workers start; they inherit the block
    until ``ignore_interrupts`` and this process gets any signal that came meanwhile after."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no process-group signals to fear
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, INTERRUPTS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


__all__ = ["INTERRUPTS", "StopRequest", "ignore_interrupts",
           "interrupts_blocked_while_workers_start"]

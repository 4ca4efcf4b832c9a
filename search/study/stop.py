"""A run's stop request and the one SIGINT/SIGTERM handler that sets it.

The first signal asks the running trial to end (it is told to the storage as FAIL with the
reason "interrupted (SIGINT/SIGTERM)") and no new trial to start; a second one exits the
process at once with status 130, its running trials told FAIL first on a connection of their
own if that takes under 3 s (`at_exit`; else the heartbeat fails them, as a killed
worker's); a third exits without waiting. The same handler serves the in-process run, each
spawned worker and the parent of the workers; what differs is said by `on_first` (a line
for the person, the request relayed to the workers) and `at_exit` (the workers killed
first, their trials failed).
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)

# Set when a search starts its trials (cleared by the command line as it starts): a Ctrl-C
# that reaches the command line afterwards came during the summary, not before any trial.
trials_began = threading.Event()


class Stop:
    """A stop request, set from a signal handler (or through a byte shared with the parent
    process) and polled between batches."""

    def __init__(self, shared: Any = None) -> None:
        self.requested = False
        self.signal_name = ""
        self.shared = shared  # a lock-free shared byte (multiprocessing RawValue) or None

    def __call__(self) -> bool:
        if not self.requested and self.shared is not None and self.shared.value:
            self.requested = True
        return self.requested


class SignalStop:
    """The handler of `signals` for one run: the first one sets `stop` and calls
    `on_first(signal name)`; a second calls `at_exit()` and exits at once with 130.

    `install()` and `ignore()` remember the handlers they replace, `restore()` puts them
    back. Outside the main thread (where Python cannot set handlers) all three do nothing.
    """

    def __init__(
        self,
        stop: Stop,
        *,
        signals: tuple[signal.Signals, ...] = SIGNALS,
        on_first: Callable[[str], None] | None = None,
        at_exit: Callable[[], None] | None = None,
    ) -> None:
        self.stop = stop
        self.signals = signals
        self.on_first = on_first
        self.at_exit = at_exit
        self.hits = 0
        self._old: dict[signal.Signals, Any] = {}

    def __call__(self, signum: int, _: FrameType | None) -> None:
        self.hits += 1
        if self.hits > 1:
            try:
                if self.at_exit is not None and self.hits == 2:  # a third exits at once
                    self.at_exit()
            finally:  # whatever at_exit met (a closed stderr: BrokenPipeError), it exits
                os._exit(130)
        self.stop.requested = True
        self.stop.signal_name = signal.Signals(signum).name
        if self.on_first is not None:
            self.on_first(self.stop.signal_name)

    def _set(self, handler: Any) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for s in self.signals:
            old = signal.signal(s, handler)
            self._old.setdefault(s, old)

    def install(self) -> SignalStop:
        self._set(self)
        return self

    def ignore(self) -> None:
        """Ignore the signals for now (e.g. while starting processes that inherit that)."""
        self._set(signal.SIG_IGN)

    def restore(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old.clear()

    def __enter__(self) -> SignalStop:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.restore()


def stacks_on_sigusr1() -> None:
    """`kill -USR1 PID` writes every thread's stack to stderr (where a hung process waits);
    nothing when stderr is no file (e.g. captured in-process) or the platform has no
    SIGUSR1."""
    if not hasattr(signal, "SIGUSR1"):
        return
    # io.UnsupportedOperation (an OSError and a ValueError): stderr has no fileno
    with contextlib.suppress(AttributeError, OSError, ValueError):
        faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)


def end_with_parent(parent: int, stop: Stop) -> None:
    """Stop (as a first SIGINT/SIGTERM would: the running trial ends as FAIL, no new one
    starts) when this process's parent, pid `parent`, dies: a worker whose `optuna-run`
    was killed ends its trial and exits instead of training on alone. The kernel sends
    SIGHUP (PR_SET_PDEATHSIG, Linux; elsewhere nothing) once per thread of the dying parent,
    so its handler only sets the stop, however often it comes. If the parent is already
    gone, at once."""
    import ctypes

    if not hasattr(signal, "SIGHUP"):
        return

    def hangup(signum: int, _: FrameType | None) -> None:
        if not stop.requested:
            stop.requested, stop.signal_name = True, "SIGHUP"

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGHUP, hangup)
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGHUP))  # PR_SET_PDEATHSIG
    if parent and os.getppid() != parent:
        hangup(signal.SIGHUP, None)


@contextlib.contextmanager
def term_as_ctrl_c() -> Iterator[None]:
    """For the block, a SIGTERM (`kill`, `docker stop`) where no run's own handler is in
    place does what a Ctrl-C does there (KeyboardInterrupt: one line, status 130) instead of
    ending the process without a word. Only where SIGTERM has its default action, in the
    main thread."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL
    ):
        yield
        return
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # raises KeyboardInterrupt
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def import_holding_ctrl_c(modules: tuple[str, ...], exit_line: str = "") -> None:
    """Import `modules` with SIGINT and SIGTERM held until they are loaded, then act on a
    held one as the handler in place would (raise KeyboardInterrupt, call a handler set
    from Python, end the process as SIGTERM's default does, or nothing where it is
    ignored). A KeyboardInterrupt raised inside a library's import can be swallowed by the
    library's own fallbacks and leave it half-loaded (numpy without `matrix`, every trial
    then failing): Ctrl-C while torch loads waits the second it takes. A second signal
    meanwhile writes `exit_line` and exits at once with 130. Outside the main thread (no
    handlers there) it just imports."""
    import importlib

    if threading.current_thread() is not threading.main_thread():
        for name in modules:
            importlib.import_module(name)
        return
    held: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        if held:
            if exit_line:
                sys.stderr.write(exit_line + "\n")
                sys.stderr.flush()
            os._exit(130)
        held.append(signum)

    previous = {s: signal.signal(s, hold) for s in SIGNALS}
    try:
        for name in modules:
            importlib.import_module(name)
    finally:  # None: the handler was not set from Python (an embedding host's)
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
    if not held:
        return
    signum = signal.Signals(held[0])
    handler = previous[signum]
    if handler == signal.SIG_IGN:
        return
    if callable(handler) and handler is not signal.default_int_handler:
        handler(signum, None)
    elif signum == signal.SIGINT:
        raise KeyboardInterrupt
    else:
        signal.raise_signal(signum)  # its default action, now restored

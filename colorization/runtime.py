"""Process-level settings: stopping cleanly on signals, and memory settings that make
training faster without changing its results."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
import sys
import threading
import warnings
from collections.abc import Iterator

# glibc mallopt parameters
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(limit_bytes: int = 2**31 - 1) -> bool:
    """Stop glibc from handing large freed blocks back to the OS at once.

    By default glibc serves allocations over 32 MiB with mmap and unmaps them when freed, so
    every CPU training step page-faults its activation tensors in again (the time shows up
    as system time). Keeping blocks up to ``limit_bytes`` on the heap made a skip-CAE step
    on 2 cores 1.8x faster (batch 32, 150 px: 1.77 s -> 0.99 s). Returns whether it applied
    (Linux with glibc only; elsewhere a no-op).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    limit = ctypes.c_int(min(limit_bytes, 2**31 - 1))
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, limit) and libc.mallopt(_M_TRIM_THRESHOLD, limit))


class Interrupted(BaseException):
    """SIGTERM or SIGINT, raised where the program was, so ``finally`` / ``except
    BaseException`` clean-ups (temporary files) run. ``exit_code`` is the conventional
    128 + signal number (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


def _raise_interrupted(signum: int, frame) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def signals_interrupt(signums: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> Iterator[None]:
    """Inside the block, ``signums`` raise :class:`Interrupted` instead of killing the
    process (SIGTERM's default) or raising KeyboardInterrupt; the old handlers come back
    after. ``timeout``, cron, SLURM and Kubernetes stop jobs with SIGTERM. A no-op outside
    the main thread (Python delivers signals there only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise_interrupted) for s in signums}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)  # None: set from C, not restorable


@contextlib.contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """``env`` set in ``os.environ`` inside the block (processes started there inherit it),
    the previous values (or their absence) restored after."""
    import os

    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class _DropTips(logging.Filter):
    """Lightning's advertisements for its cloud services ("💡 Tip: ... try installing
    litlogger / litmodels"), logged on every run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def quiet_known_noise() -> None:
    """Silence messages every run would repeat that say nothing about the run: Lightning's
    tips and a deprecation inside Lightning's own code (``LeafSpec``, torch 2.10+) that users
    cannot act on. Real warnings stay."""
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*", category=FutureWarning)
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropTips) for f in rank_zero.filters):
        rank_zero.addFilter(_DropTips())

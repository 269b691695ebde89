"""Worker processes for probing, preparing and generating clips: one thread per library each, ending with the
process that started them (Ctrl-C, SIGTERM, SIGKILL); a pool of them, and one fresh process to retry an item in
after a worker crashed (a decoder segfault takes its whole process)."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any, Callable, Iterator

__all__ = ["single_thread", "pid_alive", "worker_pool", "run_alone"]

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "DECORD_NUM_THREADS")


def single_thread() -> None:
    """One thread per library in this (worker) process: the OpenMP/MKL/OpenBLAS/decord/numba thread variables
    are set to 1, and torch gets ``torch.set_num_threads(1)`` if it is already imported.

    Imports neither torch nor numba. ``NUMBA_NUM_THREADS`` is set only while numba is not yet imported: numba
    reads it at import, and raises on its next compilation if it changes after its threads have started."""
    for var in _THREAD_VARS:
        os.environ[var] = "1"
    if "numba" not in sys.modules:
        os.environ["NUMBA_NUM_THREADS"] = "1"
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def _init_worker(main_pid: int | None = None) -> None:
    """Worker set-up: one thread per library (:func:`single_thread`); SIGINT ignored (the parent alone handles
    Ctrl-C and ends the workers); the worker dies with its parent, even when the parent is killed by SIGTERM or
    SIGKILL."""
    single_thread()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    if not _die_with_parent():  # not Linux: poll the parent instead
        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(1)
        threading.Thread(target=watch, name="tsam-probe-parent-watch", daemon=True).start()
    if main_pid is not None and not pid_alive(main_pid):  # the parent died before the death signal was set
        os._exit(1)


def _die_with_parent() -> bool:
    """Linux: ask the kernel to SIGKILL this process when its parent dies (``prctl(PR_SET_PDEATHSIG)``)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) == 0  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return False


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (also one owned by another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    except OSError:
        return False
    return True


def _end_pool(ex: ProcessPoolExecutor) -> None:
    """Stop a pool now: cancel queued items, terminate (then kill) the workers and reap them."""
    procs = list((getattr(ex, "_processes", None) or {}).values())
    ex.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(3)
        if p.is_alive():
            p.kill()
            p.join(1)


@contextmanager
def worker_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A process pool of workers that never outlives its caller: a normal exit waits for the items; an exception
    (KeyboardInterrupt on Ctrl-C, BrokenProcessPool, ...) ends the workers at once."""
    ex = ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(os.getpid(),))
    try:
        yield ex
        ex.shutdown(wait=True)
    except BaseException:
        _end_pool(ex)
        raise


def run_alone(fn: Callable[[Any], Any], item: Any, crashed: Any) -> Any:
    """``fn(item)`` in a worker process of its own, or ``crashed`` when that process dies too: how a pool's
    remaining items are finished after one crashed a worker, so that one bad file costs only its own result."""
    try:
        with worker_pool(1) as ex:
            return ex.submit(fn, item).result()
    except BrokenProcessPool:
        return crashed

"""The lab's pool of forked workers (the comparison's runs, the report's pictures): how it starts, waits, and stops
on Ctrl-C or SIGTERM without losing the signal or leaving a worker behind."""

from __future__ import annotations

import multiprocessing
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from typing import Any

__all__ = ["clear_stop", "request_stop", "run_forked", "stop_workers", "worker_signals"]

_HELD = {signal.SIGTERM, signal.SIGINT}
_STOP = threading.Event()


def request_stop() -> None:
    """Ask the running pool (:func:`run_forked`) to stop, from a signal handler that also raises KeyboardInterrupt:
    Python drops an exception raised while it runs its own callbacks (around a fork, in a finaliser), so the pool
    also checks this request while it waits for its workers, and stops within a quarter of a second."""
    _STOP.set()


def clear_stop() -> None:
    """Forget an earlier stop request (a new comparison begins)."""
    _STOP.clear()


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGTERM and Ctrl-C back while the pool forks, and deliver them after. Python runs its own code around a
    fork (the callbacks of os.register_at_fork, logging's among them), and an exception a signal handler raises
    there is reported and dropped: a SIGTERM that landed then was lost and the work ran on."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def worker_signals() -> None:
    """In a worker: the default SIGTERM (the parent's handler, inherited by fork, turns it into an exception) and
    no Ctrl-C (the parent stops the workers); the signals the parent held back while forking are let through again."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD)


def stop_workers(pool: ProcessPoolExecutor) -> None:
    """End the workers now, rather than waiting for their running tasks. Workers write no files, so they are
    killed outright (a worker just forked may not have set up its signals yet). The pool then marks every unfinished
    task as broken (cancelling them as well would make its management thread fail while it does so)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        if process.is_alive():
            process.kill()
    for process in processes:
        process.join(timeout=5)


def run_forked(
    task: Callable[[int], Any], indices: Iterable[int], jobs: int, on_result: Callable[[int, Any], None]
) -> None:
    """Run ``task(i)`` for each index in ``jobs`` forked workers, handing each result to ``on_result(i, result)`` in
    the parent as it comes. ``task`` is a module-level function (the workers find it by name) that reads what it
    needs from state set up before the call (the fork copies it). On any exception, a stop request included, the
    workers are killed and the exception goes on."""
    with ProcessPoolExecutor(
        max_workers=jobs, mp_context=multiprocessing.get_context("fork"), initializer=worker_signals
    ) as pool:
        try:
            with _signals_held():  # the pool forks its workers here
                futures = {pool.submit(task, i): i for i in indices}
            waiting = set(futures)
            while waiting:
                done, waiting = wait(waiting, timeout=0.25, return_when=FIRST_COMPLETED)
                for future in done:
                    on_result(futures[future], future.result())
                if _STOP.is_set():  # a stop asked for by a signal whose own exception was lost
                    raise KeyboardInterrupt
        except BaseException:
            stop_workers(pool)
            raise

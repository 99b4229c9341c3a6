"""A deadline on pure-Python work this thread runs (json_repair's scans, which nothing else bounds)."""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class PastDeadline(BaseException):
    """The work ran past its deadline and was interrupted. A BaseException: the `except Exception` of the
    interrupted code does not swallow it."""


@contextmanager
def interrupt_after(seconds: float) -> Iterator[None]:
    """Run the block; past `seconds`, a timer raises PastDeadline in this thread (at its next bytecode: code
    waiting in C is interrupted when it returns). A block that ends first is never interrupted afterwards."""
    thread = ctypes.c_ulong(threading.get_ident())
    lock = threading.Lock()
    state = {"active": True, "fired": False}

    def fire() -> None:
        with lock:
            if state["active"]:
                state["fired"] = True
                ctypes.pythonapi.PyThreadState_SetAsyncExc(thread, ctypes.py_object(PastDeadline))

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    try:
        timer.start()
        yield
    finally:
        timer.cancel()
        while True:
            try:
                with lock:
                    state["active"] = False
                    if state["fired"]:  # raised but not delivered yet: withdrawn, the block's result stands
                        ctypes.pythonapi.PyThreadState_SetAsyncExc(thread, None)
                break
            except PastDeadline:
                continue  # delivered during this clean-up, after the block ended: the one being withdrawn

"""Run a step function in a daemon thread that can be paused, resumed, stopped and told to quit.

:class:`BackgroundLoop` is the thread control of :class:`segloss.train.trainer.Trainer`, kept apart
from the training itself. A subclass provides ``step()`` and ``steps_done``; the loop calls
``step()`` until ``total_steps`` is reached, :meth:`stop` is called, or the ``keep_running``
callable it was started with returns False (a UI injects one that watches its session, so the
library never needs to know what a browser tab is). Status, always one of :data:`STATUSES`:

- ``idle``: never started (or reset); ``running``; ``paused``;
- ``finished``: reached ``total_steps``; ``stopped``: by :meth:`stop` or ``keep_running``;
- ``failed``: ``step()`` raised; ``message`` holds the exception.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

STATUSES = ("idle", "running", "paused", "finished", "stopped", "failed")
POLL_SECONDS = 0.2  # how often a paused loop checks keep_running and stop


class BackgroundLoop:
    """Thread control shared by long-running step-wise jobs (see the module docstring).

    Subclasses call ``_init_loop()`` in ``__init__`` and implement ``step()``, the
    ``steps_done`` attribute, and optionally ``_before_loop()`` / ``_after_step()``.
    ``_state_lock`` guards ``status``, ``message`` and ``total_steps``; subclasses may use it
    for their own quickly-copied state.
    """

    steps_done: int

    def _init_loop(self) -> None:
        self._state_lock = threading.Lock()
        self._stop = threading.Event()
        self._running = threading.Event()  # set: train; clear: paused
        self._thread: threading.Thread | None = None
        self.status, self.message = "idle", None
        self.total_steps: int | None = None

    def step(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def _before_loop(self) -> None:
        """Called in the thread before the first step of each start()."""

    def _after_step(self) -> None:
        """Called in the thread after each step."""

    def start(self, total_steps: int | None = None, keep_running: Callable[[], bool] | None = None) -> None:
        """Run ``step()`` in a daemon thread until ``steps_done == total_steps`` (None: until stopped).

        Args:
            total_steps: the step count to reach; training continues from the current step.
            keep_running: polled before every step and while paused; when it returns False the
                thread ends with status "stopped".

        Raises:
            RuntimeError: if the thread is already running (pause/resume or stop it first).
            TypeError: ``total_steps`` not an int, ``keep_running`` not callable.
            ValueError: ``total_steps < 1``.
        """
        if total_steps is not None:
            if isinstance(total_steps, bool) or not isinstance(total_steps, int):
                raise TypeError(f"total_steps must be an int or None, got {total_steps!r}")
            if total_steps < 1:
                raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        if keep_running is not None and not callable(keep_running):
            raise TypeError(f"keep_running must be a callable returning bool, got {keep_running!r}")
        if self.is_alive():
            raise RuntimeError("already running; pause/resume or stop it first")
        self._stop.clear()
        self._running.set()
        with self._state_lock:
            self.total_steps = total_steps
            self.status, self.message = "running", None
        self._thread = threading.Thread(target=self._loop, args=(keep_running,), daemon=True,
                                        name=f"segloss-{type(self).__name__.lower()}-{id(self):x}")
        self._thread.start()

    def _loop(self, keep_running: Callable[[], bool] | None) -> None:
        try:
            self._before_loop()
            while not self._stop.is_set():
                if keep_running is not None and not keep_running():
                    return self._set_status("stopped", "stopped: the session that started it has closed")
                if not self._running.wait(timeout=POLL_SECONDS):
                    continue  # paused
                if self.total_steps is not None and self.steps_done >= self.total_steps:
                    return self._set_status("finished", None)
                self.step()
                self._after_step()
            self._set_status("stopped", None)
        except Exception as err:  # reported through status/message; the thread must not die silently
            self._set_status("failed", f"{type(err).__name__}: {err}")

    def _set_status(self, status: str, message: str | None) -> None:
        with self._state_lock:
            self.status, self.message = status, message

    def is_alive(self) -> bool:
        """True while the thread exists (running or paused)."""
        return self._thread is not None and self._thread.is_alive()

    def pause(self) -> None:
        """Pause after the current step (no effect unless running)."""
        with self._state_lock:
            if self.status == "running":
                self._running.clear()
                self.status = "paused"

    def resume(self) -> None:
        """Resume a paused loop (no effect otherwise)."""
        with self._state_lock:
            if self.status == "paused":
                self._running.set()
                self.status = "running"

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the current step and wait for the thread (at most ``timeout`` seconds)."""
        self._stop.set()
        self._running.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._state_lock:
            if self.status in ("running", "paused"):
                self.status = "stopped"

"""One background trainer per browser session, stopped when its browser tab goes away.

Streamlit keeps one ``AppSession`` per browser tab (per websocket connection); its
``st.session_state`` is private to that tab, so a trainer stored there is never shared with
another tab, and it survives switching pages (page changes keep the session). When the tab
closes, the server's ``WebsocketSessionManager.disconnect_session`` removes the session from
its active sessions (keeping it a while for a reconnect), so
``Runtime.instance().is_active_session(session_id)`` turns False; it is documented as safe to
call from any thread. :func:`session_keep_running` wraps that check into the plain
``keep_running() -> bool`` callable that :meth:`segloss.train.trainer.Trainer.start` polls between
steps, so the trainer thread ends by itself and segloss never imports streamlit.

A reload or a short network drop reconnects the same session; ``grace_s`` keeps training
through such gaps instead of stopping at the first missed check.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

GRACE_SECONDS = 10.0


def session_keep_running(grace_s: float = GRACE_SECONDS) -> Callable[[], bool]:
    """A ``keep_running`` for a thread started from the current script run.

    Returns a callable that is True while this browser session is connected, and turns False
    once it has been disconnected for ``grace_s`` seconds. Outside a server (bare
    ``python page.py``, or AppTest between runs) there is no session to watch: always True.
    """
    ctx = get_script_run_ctx(suppress_warning=True)
    if ctx is None:
        return lambda: True
    session_id = ctx.session_id
    lost_since: list[float] = []  # monotonic time the session was first seen gone, if it is

    def keep_running() -> bool:
        if not Runtime.exists():
            return True
        if Runtime.instance().is_active_session(session_id):
            lost_since.clear()
            return True
        if not lost_since:
            lost_since.append(time.monotonic())
        return time.monotonic() - lost_since[0] < grace_s

    return keep_running

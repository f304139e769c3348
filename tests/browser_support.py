"""A live Streamlit server and Debian's headless Chromium for browser tests.

The server runs ``app.py`` on a free loopback port in a subprocess; Chromium is
``/usr/bin/chromium`` (installed by ``make test``), driven by Playwright's bundled driver.
Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, extra: tuple[str, ...] | list[str] = ()) -> subprocess.Popen:
    """Start ``streamlit run app.py`` (with ``extra`` options, e.g. ``--runner.postScriptGC false``)
    and wait until its health endpoint answers; its log goes to ``test-artifacts/``."""
    ARTIFACTS.mkdir(exist_ok=True)
    log = open(ARTIFACTS / f"streamlit-{port}.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
         *extra],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return process
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"streamlit did not start; see {log.name}")


def legend_entries_cut_off(chart) -> int:
    """How many legend entries of a plotly chart (a ``stPlotlyChart`` locator) lie past the chart's
    bottom or right edge, or run into the next entry of their row: a legend taller than the room made
    for it is cut at the bottom without a scroll bar, a long name in a fixed-width entry at the side."""
    return chart.evaluate(
        "(el) => { const svg = el.querySelector('svg.main-svg').getBoundingClientRect();"
        " const boxes = [...el.querySelectorAll('g.legend g.traces')].map(t => t.getBoundingClientRect());"
        " return boxes.filter((b, i) => b.bottom > svg.bottom + 1 || b.right > svg.right + 1 ||"
        " boxes.some((o, j) => j !== i && Math.abs(o.top - b.top) < 2 && o.left > b.left && o.left < b.right - 1))"
        ".length; }")

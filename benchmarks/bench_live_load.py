"""Live training under load, measured through the real page in headless Chromium.

Starts the app (``streamlit run app.py``) on a loopback port and drives Debian's Chromium with
Playwright. Every figure is read off the pages themselves (the "Step" metric), not off the
trainer in-process:

1. One session: steps/s with the Live training page open, then with the session on the home
   page (the trainer keeps running in the background); their ratio is what watching costs.
2. ``K`` sessions (``--sessions``, default 2 and 5) training at once: each one's steps/s as a
   ratio to the one-session rate (page open), the time a fresh browser takes to load the home
   page meanwhile, and the slowest ``/_stcore/health`` answer.

Usage: python benchmarks/bench_live_load.py [--seconds 15] [--sessions 2 5] [--server-arg=--runner.postScriptGC=true]
Bounded in time (about (3 + len(sessions)) x (seconds + 15) s) and localhost only.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from browser_support import CHROMIUM, CHROMIUM_ARGS, free_port, start_server  # noqa: E402  (one copy of each)

WARM_UP_SECONDS = 6.0


def step_counter(page) -> int:
    label = page.get_by_test_id("stMetricLabel").get_by_text("Step", exact=True)
    value = page.get_by_test_id("stMetric").filter(has=label).get_by_test_id("stMetricValue")
    return int(value.inner_text(timeout=30_000).split("/")[0])


def open_training(browser, url: str):
    """A fresh browser session on the Live training page, training (up to 50,000 steps)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.goto(f"{url}/Live_training")
    steps = page.get_by_label("Steps to train")
    expect(steps).to_be_visible(timeout=60_000)
    steps.fill("50000")
    steps.press("Enter")
    page.wait_for_timeout(500)
    page.get_by_role("button", name="Start").click()
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=stMetricValue]')]"
                           ".some(e => /^[1-9][0-9]* \\//.test(e.innerText))", timeout=60_000)
    return context, page


def rates(pages, seconds: float) -> list[float]:
    """Steps/s of each page's trainer over ``seconds``, read off the pages."""
    first = [(step_counter(p), time.perf_counter()) for p in pages]
    time.sleep(seconds)
    last = [(step_counter(p), time.perf_counter()) for p in pages]
    return [(s1 - s0) / (t1 - t0) for (s0, t0), (s1, t1) in zip(first, last)]


class HealthProbe(threading.Thread):
    """Polls ``/_stcore/health`` twice a second; keeps the slowest answer."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.worst, self.running = f"{url}/_stcore/health", 0.0, True

    def run(self) -> None:
        while self.running:
            start = time.perf_counter()
            try:
                urllib.request.urlopen(self.url, timeout=30).read()
            except OSError:
                pass
            self.worst = max(self.worst, time.perf_counter() - start)
            time.sleep(0.5)


def home_load_seconds(browser, url: str) -> float:
    """A fresh browser session loading the home page until its title shows."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(120_000)
    start = time.perf_counter()
    page.goto(url)
    expect(page.get_by_test_id("stHeading").first).to_be_visible(timeout=120_000)
    elapsed = time.perf_counter() - start
    context.close()
    return elapsed


def one_session(browser, url: str, seconds: float) -> dict:
    context, page = open_training(browser, url)
    time.sleep(WARM_UP_SECONDS)
    open_rate = rates([page], seconds)[0]
    before, left = step_counter(page), time.perf_counter()
    page.get_by_test_id("stSidebar").get_by_role("link", name="Home").click()
    expect(page.get_by_test_id("stHeading").first).to_be_visible(timeout=60_000)
    time.sleep(seconds)
    page.get_by_test_id("stSidebar").get_by_role("link", name="Live training").click()
    after, back = step_counter(page), time.perf_counter()
    context.close()
    return {"open": open_rate, "away": (after - before) / (back - left)}


def many_sessions(browser, url: str, count: int, seconds: float) -> dict:
    sessions = [open_training(browser, url) for _ in range(count)]
    time.sleep(WARM_UP_SECONDS)
    probe = HealthProbe(url)
    probe.start()
    each = rates([page for _, page in sessions], seconds)
    home = home_load_seconds(browser, url)
    probe.running = False
    probe.join(timeout=35)
    for context, _ in sessions:
        context.close()
    return {"each": each, "home_load_s": home, "worst_health_s": probe.worst}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="measurement window per figure")
    parser.add_argument("--sessions", type=int, nargs="*", default=[2, 5])
    parser.add_argument("--server-arg", action="append", default=[], help="extra `streamlit run` option")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(port, args.server_arg)
    results = {"server_args": args.server_arg}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            results["one"] = one_session(browser, url, args.seconds)
            base = results["one"]["open"]
            print(f"one session: {base:.2f} steps/s with the page open, {results['one']['away']:.2f} on the home "
                  f"page: page open / away = {base / results['one']['away']:.2f}")
            for count in args.sessions:
                found = results[f"{count}"] = many_sessions(browser, url, count, args.seconds)
                ratios = ", ".join(f"{r / base:.2f}" for r in found["each"])
                print(f"{count} sessions: {', '.join(f'{r:.2f}' for r in found['each'])} steps/s each = {ratios} x one "
                      f"session; home page loads in {found['home_load_s']:.1f} s; slowest health answer "
                      f"{found['worst_health_s']:.2f} s")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

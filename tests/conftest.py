"""Shared test helpers: small random segmentation batches, a live app server and a browser.

Without CUDA the Triton kernels run in triton's interpreter (``TRITON_INTERPRET=1``, set here
before anything imports triton), and tests marked ``gpu`` are deselected, visibly, by marker.
"""

import os
import random
import zlib

import numpy as np
import pytest
import torch
from hypothesis import settings

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Property tests draw the same cases on every run (a CI failure can be rerun, and CI never goes red
# on a case no one can reproduce); HYPOTHESIS_PROFILE=explore draws new ones, to hunt for bugs.
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture(autouse=True)
def _seeded_global_generators(request):
    """Seed torch's, numpy's and Python's global generators from the test's id before each test.

    torch starts its global generator from a random seed in each process, so a test drawing from it
    without a seed of its own saw new numbers on every run: a failure could not be rerun. Seeded from
    the test's id, each test draws the same numbers on every run, in any order and under ``-k``.
    """
    seed = zlib.crc32(request.node.nodeid.encode())
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def pytest_collection_modifyitems(config, items):
    """Deselect ``@pytest.mark.gpu`` tests where CUDA is missing (reported as deselected, not skipped)."""
    if torch.cuda.is_available():
        return
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if gpu:
        config.hook.pytest_deselected(items=gpu)
        items[:] = [item for item in items if not item.get_closest_marker("gpu")]


# The pixel-wise cases every fast path is checked on (test_fast_path.py, the Triton tests): CE, weighted
# CE, focal (scalar and per-class alpha) and Dual Focal at its defaults and at other parameters.
PIXELWISE_CASES = [
    ("cross_entropy", {}),
    ("cross_entropy", {"weight": [0.5, 2.0, 1.0, 3.0]}),
    ("focal_loss", {"gamma": 2.0}),
    ("focal_loss", {"gamma": 0.5, "alpha": [0.1, 0.5, 1.0, 2.0], "weight": [1.0, 2.0, 0.5, 1.0]}),
    ("focal_loss", {"gamma": 5.0, "alpha": 0.25}),
    ("dual_focal_loss", {}),
    ("dual_focal_loss", {"alpha": 0.5, "beta": 2.0, "gamma": 0.5, "rho": 1.5, "weight": [1.0, 3.0, 1.0, 0.2]}),
]


def random_batch(n=2, c=4, spatial=(5, 6), *, scale=3.0, ignore_frac=0.0, dtype=torch.float32, seed=0):
    """Random ``(N, C, *spatial)`` logits and ``(N, *spatial)`` labels, some set to 255."""
    g = torch.Generator().manual_seed(seed)
    logits = (scale * torch.randn(n, c, *spatial, generator=g, dtype=torch.float64)).to(dtype)
    target = torch.randint(0, c, (n, *spatial), generator=g)
    if ignore_frac > 0:
        target[torch.rand(target.shape, generator=g) < ignore_frac] = 255
    return logits, target


@pytest.fixture
def batch():
    return random_batch(ignore_frac=0.2)


@pytest.fixture(scope="session")
def app_url():
    """Base URL of a freshly started app server (one per test session)."""
    from browser_support import ARTIFACTS, free_port, start_server

    ARTIFACTS.mkdir(exist_ok=True)
    port = free_port()
    server = start_server(port)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import expect, sync_playwright

    from browser_support import CHROMIUM, CHROMIUM_ARGS

    # an expect() with no timeout of its own waits 30 s, not Playwright's 5: on a loaded 2-core machine
    # the sidebar's page links once came 5 s after the page's first element (found in place later)
    expect.set_options(timeout=30_000)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so that fixtures can see whether the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def page(browser, request):
    """A fresh browser tab (its own Streamlit session); on failure a screenshot and the page's text
    go to ``test-artifacts/failed-<test>.png`` / ``.txt`` (what CI's log cannot show)."""
    from browser_support import ARTIFACTS

    context = browser.new_context(viewport={"width": 1400, "height": 2000})
    tab = context.new_page()
    yield tab
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        name = request.node.name[:80].replace("/", "_")
        try:
            tab.screenshot(path=str(ARTIFACTS / f"failed-{name}.png"), full_page=True)
            (ARTIFACTS / f"failed-{name}.txt").write_text(tab.inner_text("body"))
        except Exception as err:  # a dead page must not hide the test's own failure
            print(f"no failure screenshot: {err}")
    context.close()


def layout_case(n: int, c: int, height: int, width: int, layout: str, seed: int):
    """``(logits, target, dtype, tolerance)`` for checking a blockwise function against autograd:
    float64 logits (scale 3) with the first rows of the last image ignored, laid out as
    ``"contiguous"``, ``"transposed"`` (spatial dims that cannot merge), ``"half"`` (fp16, loose
    tolerance) or ``"empty"`` (no pixels)."""
    g = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(n, c, height, width, generator=g, dtype=torch.float64)
    target = torch.randint(0, c, (n, height, width), generator=g)
    target[-1, :2] = 255
    if layout == "transposed":
        logits, target = logits.transpose(2, 3), target.transpose(1, 2)
    if layout == "empty":
        logits, target = logits[:, :, :0], target[:, :0]
    dtype = torch.float16 if layout == "half" else torch.float64
    tolerance = {"rtol": 2e-3, "atol": 2e-3} if dtype == torch.float16 else {"rtol": 1e-12, "atol": 1e-12}
    return logits.to(dtype), target, dtype, tolerance

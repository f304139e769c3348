"""Training throughput of the live-training Trainer, alone and while a live view reads it.

Four measurements, interleaved ``--rounds`` times (medians reported, since other work on a
shared machine makes single windows noisy):

1. ``step() loop``: plain synchronous ``Trainer.step()`` calls (no validation), the raw speed.
2. ``thread alone``: the trainer's own background thread (``start()``), which also validates
   every ``eval_every`` steps, with nobody reading it.
3. ``+ snapshot() at 2 Hz``: the same thread while another thread calls ``snapshot()`` twice a
   second (what the page's fragment does first).
4. ``+ live view at 2 Hz``: the reader also does what the page's fragment does with each
   snapshot: the five image panels (PNG) and the plotly figures through the same
   :class:`segloss.figures.live.ViewCache` (rebuilt when the trainer has validated again), and every figure
   serialised to JSON as ``st.plotly_chart`` does on each call. Streamlit's own websocket and
   protobuf work comes on top.

The ratio "with reader / alone" is the live view's cost (target: >= 0.8). Target for the raw
speed on the 2-core development CPU: >= 10 steps/s at batch 8, 64 x 64.

With ``--steps-only`` (a GPU machine without plotly and PIL; #12's "a 256 px batch of 16 is not
bound by CPU drawing"): the batches drawn per second by one process (``data.make_batch``), by the
trainer's prefetcher, and measurements 1 and 2 only, on the device ``choose_device()`` picks.

Usage: python benchmarks/bench_training.py [--loss focal] [--seconds 6] [--rounds 3]
       python benchmarks/bench_training.py --steps-only --batch-size 16 --image-size 256 --rounds 1
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the GPU machine has the checkout, not an install

from segloss.losses.registry import LOSSES  # noqa: E402
from segloss.train import data  # noqa: E402
from segloss.train.trainer import Trainer  # noqa: E402

CACHE = []  # the live view's one ViewCache, made on first use (plotly and PIL only where the view is measured)


def render_live_view(trainer: Trainer, cache=None) -> None:
    """What one refresh of the page computes and serialises (the page keeps the same cache:
    panels and figures are rebuilt only after a new validation)."""
    import plotly.io

    from segloss.figures import live

    snap = trainer.snapshot()
    if snap.view is None:
        return
    if cache is None:
        CACHE[:] = CACHE or [live.ViewCache()]
        cache = CACHE[0]
    for panel in cache.panels(snap, 0, loss_title=LOSSES[snap.config.loss].title, scale="own", log=False,
                              min_side=1):
        len(panel.png)  # encoded once per new view
    for figure in cache.figures(snap).values():
        plotly.io.to_json(figure.to_dict(), validate=False)  # what st.plotly_chart does on every call


def reader(trainer: Trainer, hz: float, stop: threading.Event, work) -> None:
    period = 1.0 / hz
    next_time = time.perf_counter()
    while not stop.is_set():
        work(trainer)
        next_time += period
        stop.wait(max(0.0, next_time - time.perf_counter()))


def thread_rate(trainer: Trainer, seconds: float, work=None, hz: float = 2.0) -> float:
    """Steps/s of the trainer's thread over ``seconds``, with an optional reader thread."""
    stop = threading.Event()
    side = threading.Thread(target=reader, args=(trainer, hz, stop, work), daemon=True) if work else None
    trainer.start()
    time.sleep(min(1.0, seconds / 4))  # let the thread (and the reader) settle
    if side:
        side.start()
    start_steps, start = trainer.steps_done, time.perf_counter()
    time.sleep(seconds)
    rate = (trainer.steps_done - start_steps) / (time.perf_counter() - start)
    stop.set()
    trainer.stop()
    if side:
        side.join()
    return rate


def loop_rate(trainer: Trainer, seconds: float) -> float:
    start_steps, start = trainer.steps_done, time.perf_counter()
    while time.perf_counter() - start < seconds:
        trainer.step()
    return (trainer.steps_done - start_steps) / (time.perf_counter() - start)


def draw_rates(trainer: Trainer, seconds: float) -> tuple[float, float]:
    """Batches/s drawn by one process (``data.make_batch``, as without a prefetcher) and handed out by
    the trainer's ``batch()`` (its prefetcher's processes, when it has them), each over ``seconds``."""
    config = trainer.config
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        data.make_batch(config.dataset, config.batch_size, config.image_size, count)
        count += 1
    one = count / (time.perf_counter() - start)
    first = index = trainer.steps_done + 10_000  # batches no step has asked for yet
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        trainer.batch(index)
        index += 1
    rate = (index - first) / (time.perf_counter() - start)
    if trainer._prefetcher is not None:
        trainer._prefetcher.drop_pending()  # batches far ahead: the next steps would wait behind them
    return one, rate


def steps_only(args) -> None:
    trainer = Trainer(dataset=args.dataset, loss=args.loss, batch_size=args.batch_size,
                      image_size=args.image_size, lr=3e-3)
    loop_rate(trainer, 2.0)  # warm-up: allocator, kernels' compilation, the prefetcher's processes
    rates = {"draw": [], "prefetched": [], "loop": [], "alone": []}
    for _ in range(args.rounds):
        rates["loop"].append(loop_rate(trainer, args.seconds))
        rates["alone"].append(thread_rate(trainer, args.seconds))
        one, prefetched = draw_rates(trainer, args.seconds)
        rates["draw"].append(one)
        rates["prefetched"].append(prefetched)
    median = {k: statistics.median(v) for k, v in rates.items()}
    device = torch.cuda.get_device_name() if trainer.device.type == "cuda" else "CPU"
    print(f"Trainer {args.dataset} / {args.loss}, batch {args.batch_size} at {args.image_size} px on {device} "
          f"(AMP: {trainer.amp}); medians of {args.rounds} x {args.seconds:g} s windows")
    print(f"batches drawn by one process   {median['draw']:8.2f} /s")
    how = f"{trainer._prefetcher.workers} prefetching processes" if trainer._prefetcher is not None else "no prefetcher"
    print(f"batches from trainer.batch()   {median['prefetched']:8.2f} /s ({how})")
    print(f"step() loop (no validation)    {median['loop']:8.2f} steps/s")
    print(f"thread alone (validates)       {median['alone']:8.2f} steps/s")
    trainer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="street")
    parser.add_argument("--loss", default="focal", choices=sorted(LOSSES))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each measurement window")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hz", type=float, default=2.0, help="reader refresh rate")
    parser.add_argument("--steps-only", action="store_true", help="drawing and stepping only, no live view")
    args = parser.parse_args()
    if args.steps_only:
        steps_only(args)
        return
    trainer = Trainer(dataset=args.dataset, loss=args.loss, batch_size=args.batch_size,
                      image_size=args.image_size, lr=3e-3)
    loop_rate(trainer, 1.0)  # warm-up: allocator, oneDNN primitives
    trainer.evaluate()
    render_live_view(trainer)
    rates: dict[str, list[float]] = {"loop": [], "alone": [], "snapshot": [], "view": []}
    for _ in range(args.rounds):
        rates["loop"].append(loop_rate(trainer, args.seconds))
        rates["alone"].append(thread_rate(trainer, args.seconds))
        rates["snapshot"].append(thread_rate(trainer, args.seconds, lambda t: t.snapshot(), args.hz))
        rates["view"].append(thread_rate(trainer, args.seconds, render_live_view, args.hz))
    cold, warm = [], []
    for _ in range(10):
        start = time.perf_counter()
        render_live_view(trainer, type(CACHE[0])())  # a fresh cache: everything rebuilt
        cold.append(time.perf_counter() - start)
        start = time.perf_counter()
        render_live_view(trainer)
        warm.append(time.perf_counter() - start)
    median = {k: statistics.median(v) for k, v in rates.items()}
    print(f"Trainer {args.dataset} / {args.loss}, batch {args.batch_size} at {args.image_size} px, "
          f"{torch.get_num_threads()} torch threads; medians of {args.rounds} x {args.seconds:g} s windows")
    print(f"{'what':<34}{'steps/s':>9}{'vs alone':>10}")
    print(f"{'step() loop (no validation)':<34}{median['loop']:>9.2f}{'':>10}")
    print(f"{'thread alone (validates every 10)':<34}{median['alone']:>9.2f}{1.0:>10.2f}")
    for key, label in (("snapshot", f"+ snapshot() at {args.hz:g} Hz"), ("view", f"+ live view at {args.hz:g} Hz")):
        print(f"{label:<34}{median[key]:>9.2f}{median[key] / median['alone']:>10.2f}")
    print(f"one live-view refresh: {statistics.median(cold) * 1e3:.1f} ms with new data, "
          f"{statistics.median(warm) * 1e3:.1f} ms without")


if __name__ == "__main__":
    main()

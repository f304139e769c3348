"""Time of the Upload page's computation on a 1024 x 1024 image with 19-class logits.

What the page computes once per (image, prediction, losses): the per-pixel maps of four
registry losses (CE, focal, Dual Focal, recall; ``segloss.uploads.pixel_maps.loss_maps``), the
per-class table (``class_table``, with the prediction's recall and IoU) and the downsampled
view it draws (``display_view`` at 192 px per side, as for four panels). Baseline, measured in
the same run: one ``torch.nn.functional.cross_entropy(reduction="none")`` forward on the same
logits. Absolute times on a shared machine mean little; the ratios are what to compare.

Usage: python benchmarks/bench_upload_maps.py [--repeats 5] [--size 1024] [--classes 19]
"""

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from segloss.uploads import pixel_maps
from timing import best_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--classes", type=int, default=19)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    s, c = args.size, args.classes
    logits = 3 * torch.randn(c, s, s, generator=g)
    labels = torch.randint(0, c, (s, s), generator=g)
    labels[:, : s // 32] = 255  # a strip of ignored pixels, as real masks have
    image = np.random.default_rng(0).random((s, s, 3), dtype=np.float32)
    torch_labels = labels.clone()
    torch_labels[torch_labels == 255] = -100  # torch's ignore_index

    with torch.no_grad():
        baseline = best_time(lambda: F.cross_entropy(logits[None], torch_labels[None], reduction="none"),
                             args.repeats)
    maps = pixel_maps.loss_maps(logits, labels)
    steps = {
        "four maps (ce, focal, dual_focal, recall)": lambda: pixel_maps.loss_maps(logits, labels),
        "per-class table (+ recall, IoU)": lambda: pixel_maps.class_table(maps, labels, c, logits=logits),
        "display view (192 px, top-3)": lambda: pixel_maps.display_view(image, labels, logits, maps, max_side=192),
    }
    times = {name: best_time(fn, args.repeats) for name, fn in steps.items()}
    times["maps + table (the issue's figure)"] = times[next(iter(steps))] + times["per-class table (+ recall, IoU)"]
    times["everything the page computes"] = sum(times[name] for name in steps)
    width = 44
    print(f"logits ({c}, {s}, {s}) float32, {torch.get_num_threads()} threads, best of {args.repeats}")
    print(f"{'what':<{width}}{'ms':>9}{'ratio':>9}")
    print(f"{'baseline: torch F.cross_entropy, none':<{width}}{baseline * 1e3:>9.1f}{1.0:>9.2f}")
    for name, seconds in times.items():
        print(f"{name:<{width}}{seconds * 1e3:>9.1f}{seconds / baseline:>9.2f}")


if __name__ == "__main__":
    main()

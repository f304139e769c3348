"""Time of the gradient explorer's surface (256 p_t x 64 gamma, C = 19), against a baseline.

Baseline, measured in the same run: one forward + backward of torch's ``F.cross_entropy`` on
the same number of pixels (256 * 64 rows of 19 logits, float64). The surface runs 64 separate
loss evaluations (one per gamma) through autograd, so its ratio says what the per-call
overhead costs on top of the arithmetic. Region losses' surfaces (the page's own sweeps: about
65 rows) score 256 images of 100 pixels per row, 100x the baseline's pixels per row.

Usage: python benchmarks/bench_analysis.py [--repeats 5]
"""

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from segloss.explain import analysis
from timing import best_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    p_t, gammas = analysis.probability_grid(256), np.linspace(0, 5, 64)
    logits = torch.randn(256 * 64, 19, dtype=torch.float64, requires_grad=True)
    target = torch.zeros(256 * 64, dtype=torch.long)
    baseline = best_time(lambda: F.cross_entropy(logits, target).backward(), args.repeats)
    print(f"{'what':<52}{'ms':>9}{'ratio':>9}")
    print(f"{'baseline: torch CE fwd+bwd, 16384 x 19':<52}{baseline * 1e3:>9.2f}{1.0:>9.2f}")
    for name, component in (("focal", "norm"), ("dual_focal", "false")):
        seconds = best_time(lambda: analysis.gradient_surface(name, p_t, "gamma", gammas, 19, component=component),
                            args.repeats)
        print(f"{f'gradient surface {name} ({component}) 256 x 64':<52}{seconds * 1e3:>9.2f}{seconds / baseline:>9.2f}")
    for name in ("dice", "dice_focal", "dice_boundary"):  # every component from one set of gradients
        sweep = analysis.sweepable_parameters(name)[0]
        values, _ = analysis.sweep_grid(*analysis.sweep_range(name, sweep), sweep)
        seconds = best_time(lambda: analysis.gradient_surfaces(name, p_t, sweep, values, 19), max(1, args.repeats // 2))
        what = f"gradient surfaces {name} ({sweep}) 256 x {len(values)}"
        print(f"{what:<52}{seconds * 1e3:>9.2f}{seconds / baseline:>9.2f}")


if __name__ == "__main__":
    main()

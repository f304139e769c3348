"""segloss: class-imbalance losses for semantic segmentation, and the views that explain them.

The public API (what ``pip install segloss`` gives a training loop)::

    import segloss
    from segloss import functional as SF          # the loss functions (segloss/losses/functional.py)
    criterion = segloss.create_loss("dual_focal", gamma=2.0)
    loss = criterion(logits, target)               # logits (N, C, H, W), target (N, H, W)
    segloss.analysis.gradient_map(criterion, logits, target)   # (N, H, W) |dL/dz| per pixel

The package is built in wings whose imports run one way (``tests/test_layout.py`` checks it)::

    kernels <- losses <- explain <- train <- uploads <- figures      (<- ui <- pages, outside)

``import segloss`` loads ``losses`` and ``kernels`` only (torch, numpy, and triton where installed);
``segloss.analysis``
(curves, gradient surfaces and maps, in :mod:`segloss.explain.analysis`) is loaded on first use.
Nothing here imports streamlit.
"""

import importlib

from segloss.kernels.compiled import compiled_kernels_enabled, use_compiled_kernels
from segloss.losses import functional
from segloss.losses.modules import CrossEntropyLoss, DualFocalLoss, FocalLoss, RecallLoss
from segloss.losses.registry import LOSSES, LossSpec, ParamSpec, create_loss

__all__ = [
    "functional",
    "analysis",
    "CrossEntropyLoss",
    "FocalLoss",
    "DualFocalLoss",
    "RecallLoss",
    "LOSSES",
    "LossSpec",
    "ParamSpec",
    "create_loss",
    "use_compiled_kernels",
    "compiled_kernels_enabled",
]
__version__ = "0.1.0"

_LAZY = {"analysis": "segloss.explain.analysis"}


def __getattr__(name: str):
    """``segloss.analysis``: :mod:`segloss.explain.analysis`, imported on first use."""
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        globals()[name] = module
        return module
    raise AttributeError(f"module 'segloss' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])

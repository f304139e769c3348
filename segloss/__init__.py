"""segloss: class-imbalance losses for semantic segmentation, and the views that explain them.

Functions live in :mod:`segloss.functional` (``import segloss.functional as SF``); the
``nn.Module`` forms and the registry are re-exported here::

    import segloss
    criterion = segloss.create_loss("dual_focal", gamma=2.0)
    loss = criterion(logits, target)          # logits (N, C, H, W), target (N, H, W)

This package imports torch and numpy only; it never imports streamlit.
"""

from segloss import functional
from segloss._compiled import compiled_kernels_enabled, use_compiled_kernels
from segloss.losses import CrossEntropyLoss, DualFocalLoss, FocalLoss, RecallLoss
from segloss.registry import LOSSES, LossSpec, ParamSpec, create_loss

__all__ = [
    "functional",
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

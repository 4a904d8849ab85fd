"""Training objectives, one per file (in the style of sentence-transformers' ``losses/``).

* :mod:`leap.losses.terms`: the LEAP loss terms as pure tensor functions (Eq. 4-9).
* :mod:`leap.losses.leap_loss`: the LEAP objective, :func:`leap_loss` and :class:`LeapLoss`.
* :mod:`leap.losses.layerskip`: LayerSkip adapted to embeddings.
* :mod:`leap.losses.adaptive_layer`: sentence-transformers' ``AdaptiveLayerLoss``.

The registry from objective names to these classes is :mod:`leap.objectives`.
"""

from leap.config import LeapLossConfig, uniform_layer_map
from leap.losses.base import DistillationLoss
from leap.losses.leap_loss import LeapLoss, leap_loss
from leap.losses.terms import (
    contrast_loss,
    cross_depth_loss,
    depth_loss,
    exit_student_loss,
    exit_teacher_loss,
    final_loss,
    inter_loss,
    late_loss,
    layerskip_exit_loss,
    redund_loss,
    soft_margin,
)

__all__ = [
    "DistillationLoss",
    "LeapLoss",
    "LeapLossConfig",
    "contrast_loss",
    "cross_depth_loss",
    "depth_loss",
    "exit_student_loss",
    "exit_teacher_loss",
    "final_loss",
    "inter_loss",
    "late_loss",
    "layerskip_exit_loss",
    "leap_loss",
    "redund_loss",
    "soft_margin",
    "uniform_layer_map",
]

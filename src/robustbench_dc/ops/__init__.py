"""Decoupled operators: pure functions in :mod:`.functional`, layers in :mod:`.modules`."""

from robustbench_dc.ops.functional import (
    ANGULARS,
    BOUNDED_MAGNITUDES,
    MAGNITUDES,
    WEIGHTINGS,
    angular_fn,
    decoupled_conv2d,
    decoupled_linear,
    magnitude_fn,
    patch_norm2d,
)
from robustbench_dc.ops.modules import DecoupledConv2d, DecoupledLinear, OperatorConfig
from robustbench_dc.ops.optim import orthogonality_penalty, project_weights, weight_gradients

__all__ = [
    "ANGULARS",
    "BOUNDED_MAGNITUDES",
    "MAGNITUDES",
    "WEIGHTINGS",
    "DecoupledConv2d",
    "DecoupledLinear",
    "OperatorConfig",
    "angular_fn",
    "decoupled_conv2d",
    "decoupled_linear",
    "magnitude_fn",
    "orthogonality_penalty",
    "patch_norm2d",
    "project_weights",
    "weight_gradients",
]

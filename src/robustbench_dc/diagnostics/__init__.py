"""Gradient-masking diagnostics: :mod:`.checks` judges measured numbers (pure), :mod:`.run` computes the cells."""

from robustbench_dc.diagnostics.checks import Diagnostic, Measured, diagnose, measured_from_cells

__all__ = ["Diagnostic", "Measured", "diagnose", "measured_from_cells"]

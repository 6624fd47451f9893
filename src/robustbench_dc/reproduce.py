"""``reproduce``: a preset by name. The presets are shipped studies (``names.PRESETS``, report = "paper"), so this
is ``pipeline.run_study`` on one of them: the same plan, store and report as ``dc-robust study NAME``.
"""

from __future__ import annotations

from typing import Any

from robustbench_dc import names
from robustbench_dc.errors import UserError
from robustbench_dc.pipeline import run_study
from robustbench_dc.study import Study, load_study, with_options


def get_preset(name: str) -> Study:
    if name not in names.PRESETS:
        raise UserError(names.unknown("preset", name, names.PRESETS))
    return load_study(name)


def reproduce(preset: str, *, seeds: str | None = None, **kwargs: Any) -> dict[str, float]:
    """Train and evaluate everything preset ``preset`` needs (``run_study``'s keyword arguments: workspace,
    data_dir, device, executor, on_stage, on_progress); ``seeds``: other training seeds, e.g. ``"0,1"``."""
    return run_study(with_options(get_preset(preset), seeds=seeds), **kwargs)

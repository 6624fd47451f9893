"""The official AutoAttack (Croce & Hein 2020; the package RobustBench evaluates with), for attack ``autoattack``."""

from __future__ import annotations

import logging
from typing import Callable

import torch
from torch import Tensor, nn

from robustbench_dc.attacks.specs import Attack, AutoAttack
from robustbench_dc.errors import UserError

NAME = "pyautoattack"


class _Announce(logging.Handler):
    """Its log says when each component attack starts ("running apgd-t"): passed on as progress details."""

    def __init__(self, on_detail: Callable[[str], None], batch: int) -> None:
        super().__init__(logging.DEBUG)
        self.on_detail, self.batch = on_detail, batch

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("running "):
            self.on_detail(
                f"autoattack: {message.removeprefix('running ')} on the images of {self.batch} still classified right"
            )


def craft(
    attack: Attack,
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    eps: float,
    on_detail: Callable[[str], None] | None = None,
) -> Tensor:
    """Adversarial images for one batch, as ``AutoAttack(...).run_standard_evaluation`` makes them; its seed is drawn
    from torch's global generator (seeded by the caller), so a cell is repeatable."""
    if not isinstance(attack, AutoAttack):
        raise NotImplementedError(type(attack).__name__)
    try:
        from pyautoattack import AutoAttack as Official
    except ImportError as exc:
        raise UserError(
            "attack autoattack is the official AutoAttack: pip install 'robustbench-dc[autoattack]' (or pip install "
            "pyautoattack); torchattacks' port runs as autoattack-ta"
        ) from exc
    seed = int(torch.randint(0, 2**31 - 1, ()).item())
    official = Official(model, norm="Linf", eps=eps, version=attack.version, seed=seed, device=images.device)
    log = logging.getLogger("auto-attack")
    handler = _Announce(on_detail, images.shape[0]) if on_detail is not None else None
    level, propagate = log.level, log.propagate
    if handler is not None:  # its debug lines go to the progress only, not to the user's logging
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)
        log.propagate = False
    try:
        adv, _ = official.run_standard_evaluation(images, labels, batch_size=images.shape[0])
    finally:
        if handler is not None:
            log.removeHandler(handler)
            log.setLevel(level)
            log.propagate = propagate
    return adv.detach()

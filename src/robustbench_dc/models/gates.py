"""ConvNet-AIG's gates (Veit & Belongie, ECCV 2018): per image and residual block, execute the block or skip it.

``x_l = relu(shortcut(x) + z(x) * branch(x))`` with ``z`` in {0, 1} from global pooling and two small layers
giving two logits (skip, execute). Training samples ``z`` with the Gumbel-max trick, forward hard and backward
through the Gumbel softmax; evaluation takes the larger logit (no noise). The target-rate loss pulls every
block's execution rate over the batch towards ``target_rate``.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustbench_dc.models.relaxation import HardDecision, one_hot_argmax, straight_through


class Gate(HardDecision):
    """Two logits (skip, execute) per image from the block's input; ``forward`` returns z of shape (N,)."""

    def __init__(self, channels: int, hidden: int = 16, temperature: float = 1.0, initial_rate: float = 0.85) -> None:
        super().__init__()
        self.temperature = temperature
        self.layers = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(channels, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, 2),
        )
        with torch.no_grad():  # start with every block executed for most images, as the reference does
            head = cast(nn.Linear, self.layers[-1])
            head.weight.mul_(0.1)
            head.bias.copy_(torch.tensor([0.0, math.log(initial_rate / (1 - initial_rate))]))
        self.last_decision: Tensor | None = None  # hard z of the last forward (detached), for execution rates

    def forward(self, x: Tensor) -> Tensor:
        logits = self.layers(x).float()
        if self.training:  # Gumbel-max sample; the global generator, seeded per epoch by training
            u = torch.rand_like(logits).clamp_(1e-6, 1 - 1e-6)
            logits = logits - torch.log(-torch.log(u))
        hard = one_hot_argmax(logits, 1)
        z = straight_through(hard, F.softmax(logits / self.temperature, 1)) if self.straight_through else hard
        self.last_decision = hard[:, 1].detach()
        return z[:, 1]


class GatedBlock(nn.Module):
    """A residual block whose branch is executed (z = 1) or skipped (z = 0) per image."""

    def __init__(self, branch: nn.Module, shortcut: nn.Module, channels_in: int, hidden: int) -> None:
        super().__init__()
        self.branch, self.shortcut = branch, shortcut
        self.gate = Gate(channels_in, hidden)
        self.relu = nn.ReLU(inplace=True)
        self.last_rate: Tensor | None = None  # mean z over the last batch, with its gradient (target-rate loss)

    def forward(self, x: Tensor) -> Tensor:
        z = self.gate(x)
        self.last_rate = z.mean() if self.training else None
        branch = self.branch(x)
        return self.relu(self.shortcut(x) + z.to(branch.dtype).view(-1, 1, 1, 1) * branch)


def target_rate_loss(model: nn.Module, target: float) -> Tensor | None:
    """Mean over gated blocks of (execution rate over the last training batch - target)^2; None without gates."""
    rates = [m.last_rate for m in model.modules() if isinstance(m, GatedBlock) and m.last_rate is not None]
    if not rates:
        return None
    return torch.stack([(r - target) ** 2 for r in rates]).mean()


@torch.no_grad()
def execution_rates(model: nn.Module, images: Tensor, batch_size: int = 500) -> list[float]:
    """Per gated block, the fraction of ``images`` for which the evaluated model executes it ([] without gates)."""
    gates = [m for m in model.modules() if isinstance(m, Gate)]
    if not gates:
        return []
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    totals = torch.zeros(len(gates))
    try:
        for i in range(0, images.shape[0], batch_size):
            model(images[i : i + batch_size].to(device))
            totals += torch.stack([cast(Tensor, g.last_decision).sum().cpu() for g in gates])
    finally:
        model.train(was_training)
    return (totals / images.shape[0]).tolist()

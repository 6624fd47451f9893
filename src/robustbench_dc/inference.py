"""Batched prediction without gradients."""

from __future__ import annotations

import torch
from torch import Tensor, nn


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, batch_size: int = 500) -> Tensor:
    """Predicted labels for float images in [0, 1]; the model is put in eval mode and left there."""
    model.eval()
    out = [model(images[i : i + batch_size]).argmax(1) for i in range(0, images.shape[0], batch_size)]
    return torch.cat(out) if out else torch.empty(0, dtype=torch.int64)

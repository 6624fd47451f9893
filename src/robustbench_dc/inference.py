"""Batched prediction without gradients, on the model's device."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustbench_dc.devices import module_device

DEFAULT_BATCH_SIZE = 500


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, batch_size: int = DEFAULT_BATCH_SIZE) -> Tensor:
    """Predicted labels (on the CPU) for float images in [0, 1]; the model is put in eval mode and left there.

    Each batch goes to the model's device as a private copy, so a model that changes its input in place
    cannot alter the caller's images."""
    model.eval()
    device = module_device(model)
    out = [model(images[i : i + batch_size].to(device, copy=True)).argmax(1).cpu() for i in range(0, images.shape[0], batch_size)]
    return torch.cat(out) if out else torch.empty(0, dtype=torch.int64)

"""Batched prediction without gradients, on the model's device."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustbench_dc.devices import full_precision, module_device
from robustbench_dc.errors import UserError

DEFAULT_BATCH_SIZE = 500


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, batch_size: int = DEFAULT_BATCH_SIZE) -> Tensor:
    """Predicted labels (on the CPU) for float images in [0, 1]; the model is put in eval mode and left there.

    Each batch goes to the model's device as a private copy, so a model that changes its input in place
    cannot alter the caller's images."""
    model.eval()
    device = module_device(model)
    out = []
    for i in range(0, images.shape[0], batch_size):
        with full_precision():
            logits = model(images[i : i + batch_size].to(device, copy=True))
        if not torch.isfinite(logits).all():
            bad = int((~torch.isfinite(logits)).any(1).sum())
            raise UserError(
                f"the model's outputs are not finite (NaN or inf) on {bad} of {logits.shape[0]} images of a batch; a "
                "number computed from them would be meaningless (check the model and its input range)"
            )
        out.append(logits.argmax(1).cpu())
    return torch.cat(out) if out else torch.empty(0, dtype=torch.int64)

"""The protocol's rules over stored model descriptions, torch-free so that reports and queries need no torch:
the black-box source of a zoo model and the recipe identity that a model's training seeds share (how tables
name a model is ``ModelInfo.title``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

#: The black-box source the protocol prescribes for a zoo model: a naturally trained baseline of the same
#: recipe (architecture, width, data, epochs, ...) with the training seed + 1.
PROTOCOL_SOURCE = "natural baseline, same recipe, training seed + 1"


def recipe_id(train_config: dict[str, Any]) -> str:
    """Identity of a training recipe without its seed: models that differ only in the seed share it."""
    rest = {k: v for k, v in train_config.items() if k != "seed"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()


def protocol_source_config(train_config: dict[str, Any]) -> dict[str, Any]:
    """The training configuration of a zoo model's protocol black-box source (see ``PROTOCOL_SOURCE``)."""
    return {
        **train_config,
        "model": "baseline",
        "training": "natural",
        "operator": {},
        "weight_projection": False,
        "eps": 8 / 255,
        "seed": int(train_config["seed"]) + 1,
    }

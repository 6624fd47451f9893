"""A small classifier that is not in the zoo, as a user's own model would be (importable by --factory)."""

import torch
from torch import nn


class SmallNet(nn.Module):
    """Expects inputs normalised with mean 0.3, std 0.4 (1 channel, 8x8), like many models trained elsewhere."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.fc = nn.Linear(32 * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))


def build() -> nn.Module:
    return SmallNet()


def build_wrong_classes() -> nn.Module:
    return SmallNet(num_classes=3)


class NonFinite(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 10), float("nan"))


def build_nonfinite() -> nn.Module:
    return NonFinite()


class PoolNet(nn.Module):
    """Same parameters whatever the pooling: a state dict fits both variants, which compute different functions."""

    def __init__(self, pool: str = "max") -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.pool(self.conv(x))).flatten(1))


def build_max() -> nn.Module:
    return PoolNet("max")


def build_avg() -> nn.Module:
    return PoolNet("avg")

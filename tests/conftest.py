"""Shared fixtures: tiny seeded models, and seeded random-init torchvision models with spread values."""

from __future__ import annotations

import copy
import functools
import os

import pytest
import torch
import torchvision
from torch import nn

# `make test` runs one pytest-xdist worker per core: each worker's torch takes its share of the cores (two
# workers of two threads each on two cores spend their time waiting on each other).
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // WORKERS))


class TinyCNN(nn.Module):
    """conv(1->2) -> ReLU -> [features] -> global average pool -> linear(2->3), fixed weights."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(2, 3)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[[[0, 0, 0], [0, 1, 0], [0, 0, 0]]],
                                                 [[[0, 0, 0], [0, -1, 0], [0, 0, 0]]]], dtype=torch.float32))
            self.fc.weight.copy_(torch.tensor([[2.0, -1.0], [-1.0, 3.0], [0.5, 0.5]]))
            self.fc.bias.copy_(torch.tensor([0.1, 0.2, 0.3]))

    def forward(self, x):
        a = self.relu(self.conv(x))
        return self.fc(a.mean(dim=(2, 3)))


class TwoStageCNN(nn.Module):
    """A small non-linear head after the target layer, with BatchNorm and Dropout (eval matters)."""

    def __init__(self, classes: int = 4):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True))
        self.features = nn.Sequential(nn.Conv2d(8, 6, 3, padding=1, stride=2), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Conv2d(6, 5, 1), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(5, classes)

    def forward(self, x):
        return self.fc(self.drop(self.pool(self.head(self.features(self.stem(x)))).flatten(1)))


def spread_init(model: nn.Module, seed: int = 0) -> nn.Module:
    """Seeded, spread-out BatchNorm and Linear values so random-init maps are not degenerate."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                module.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(n, generator=gen) * 0.2)
                module.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            elif isinstance(module, nn.Linear):
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) / module.in_features**0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.1)
    return model.eval()


def seeded_model(name: str, seed: int = 0) -> nn.Module:
    """torchvision's ``name``, seeded random weights with spread values, in eval mode: built once per test
    session, each caller given its own copy (a test may move, randomise or hook it)."""
    model, state = _seeded(name, seed)
    torch.set_rng_state(state)  # the global generator left as building the model leaves it
    return copy.deepcopy(model)


@functools.lru_cache(maxsize=None)
def _seeded(name: str, seed: int) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(seed)
    model = spread_init(torchvision.models.get_model(name, weights=None), seed)
    return model, torch.get_rng_state()


@pytest.fixture
def tiny():
    return TinyCNN().eval()


@pytest.fixture
def two_stage():
    torch.manual_seed(0)
    return spread_init(TwoStageCNN(), 0)


@pytest.fixture(scope="session")
def trained_shapes(tmp_path_factory):
    """Small CNNs trained as a user trains them, once per session on first use: ``gradcam make-shapes
    DIR [--shortcut]`` then ``gradcam train DIR --arch small-cnn``. ``trained_shapes(shortcut)`` is the
    checkpoint folder."""
    from gradcam.cli import main

    made = {}

    def checkpoint(shortcut: bool = False):
        if shortcut not in made:
            root = tmp_path_factory.mktemp("shortcut" if shortcut else "clean")
            assert main(["make-shapes", str(root / "train"), "--n", str(SHAPES_TRAIN), "--size", "64", "--seed", "1",
                         *(["--shortcut"] if shortcut else [])]) == 0
            assert main(["train", str(root / "train"), "--arch", "small-cnn", "--image-size", "64", "--epochs",
                         str(SHAPES_EPOCHS), "--out", str(root / "model"), "--quiet"]) == 0
            made[shortcut] = root / "model"
        return made[shortcut]

    return checkpoint


SHAPES_TRAIN, SHAPES_EPOCHS = 400, 5  # images and epochs of the trained shapes models


# ---------------------------------------------------------------- Ray: the apps' Ray tests share these

LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # Ray's own switch: this node's address is 127.0.0.1
            "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0", "RAY_USAGE_STATS_ENABLED": "0"}


@pytest.fixture(scope="session")
def ray_env() -> dict[str, str]:
    """The variables of a Ray process on loopback; a driver joining a cluster sends the token Ray wrote in ~/.ray."""
    return {**LOOPBACK, "RAY_AUTH_MODE": "token"}


@pytest.fixture(scope="module")
def ray_here():
    """Ray started once for the module, in this process: 2 CPUs, 256 MiB of object store, loopback only."""
    pytest.importorskip("ray", reason="ray[data] is not installed: pip install 'gradcam[ray]'")
    saved = {k: os.environ.get(k) for k in LOOPBACK}
    os.environ.update(LOOPBACK)
    import ray
    from ray._private import ray_constants

    cluster, ray_constants.ENABLE_RAY_CLUSTER = ray_constants.ENABLE_RAY_CLUSTER, False
    context = ray.init(address="local", num_cpus=2, object_store_memory=256 * 1024**2, include_dashboard=False,
                       log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield context.address_info["gcs_address"]
    finally:
        ray.shutdown()
        ray_constants.ENABLE_RAY_CLUSTER = cluster
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)

"""Small seeded networks for the synthetic data sets with known answers (:mod:`gradcam.apps.synthetic.shapes`): the
models the tests train and explain, and the documentation's pictures come from. Each is seeded without touching
the caller's random state."""

from __future__ import annotations

import torch
from torch import nn

from gradcam.apps.synthetic.train import fit
from gradcam.errors import DataError


def small_net(dims: int, channels: int = 1, classes: int = 2, width: int = 16, seed: int = 0,
              pool_size: int | tuple = 2) -> nn.Module:
    """A small seeded classifier for signals (``dims=1``), images (2) or volumes and clips (3): three
    convolutions with ReLUs (max-pooled twice by ``pool_size``: (1, 2, 2) keeps a clip's every frame),
    global average pooling, a linear head. Its automatic layer is the last ReLU ("7"), at a quarter of
    the input's resolution along the pooled axes."""
    conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
    pool = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}[dims]
    gap = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}[dims]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(conv(channels, width, 3, padding=1), nn.ReLU(), pool(pool_size),
                             conv(width, 2 * width, 3, padding=1), nn.ReLU(), pool(pool_size),
                             conv(2 * width, 2 * width, 3, padding=1), nn.ReLU(),
                             gap(1), nn.Flatten(), nn.Linear(2 * width, classes))


def small_vit(size: int = 64, classes: int = 2, seed: int = 0) -> nn.Module:
    """A small seeded timm vision transformer for ``size``-px images: class token, patch 8, two blocks of
    four heads, width 64 (the trained ViT of the tests and docs). Needs timm."""
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return timm.create_model("vit_tiny_patch16_224", img_size=size, patch_size=8, depth=2, num_heads=4,
                                 embed_dim=64, num_classes=classes)


def small_segmenter(classes: int = 3, width: int = 16, seed: int = 0) -> nn.Module:
    """A small seeded segmenter: three convolutions (max-pooled twice, the last dilated), a 1×1 classifier
    and a bilinear upsampling back to the input: (B, classes, H, W) scores. Layer "7" is its last ReLU."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(2 * width, 2 * width, 3, padding=2, dilation=2), nn.ReLU(),
                             nn.Conv2d(2 * width, classes, 1), nn.Upsample(scale_factor=4, mode="bilinear"))


class SmallDetector(nn.Module):
    """A small detector in the manner of CenterNet (Zhou et al., 2019, "Objects as Points"): on a stride-4
    feature map, one centre heat map per class and each cell's box width and height (log, in cells).

    Training mode returns (heat logits (B, K, h, w), log sizes (B, 2, h, w)) for :func:`fit_detector`; eval
    mode returns what torchvision's detectors return: per image a dict of "boxes" (x0, y0, x1, y1 in the
    input's pixels), "labels" and "scores" (the sigmoid of the heat at each 3×3 local maximum, best first,
    at most ``detections``), scores and boxes carrying their gradient. Layer "features.7" is its last ReLU.
    """

    def __init__(self, classes: int = 2, width: int = 16, detections: int = 10, seed: int = 0):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.features = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                          nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                          nn.Conv2d(2 * width, 2 * width, 3, padding=2, dilation=2), nn.ReLU())
            self.heat = nn.Conv2d(2 * width, classes, 1)
            self.size = nn.Conv2d(2 * width, 2, 1)
            nn.init.constant_(self.heat.bias, -2.19)  # CenterNet's prior: p = 0.1 everywhere at the start
        self.detections = detections

    def forward(self, x: torch.Tensor):
        features = self.features(x)
        heat, size = self.heat(features), self.size(features)
        return (heat, size) if self.training else self.decode(heat, size, x.shape[-1] / heat.shape[-1])

    def decode(self, heat: torch.Tensor, size: torch.Tensor, stride: float) -> list[dict]:
        scores = torch.sigmoid(heat)
        peaks = heat.detach() == nn.functional.max_pool2d(heat.detach(), 3, stride=1, padding=1)
        found = []
        for b in range(len(heat)):
            ranked = (scores[b].detach() * peaks[b]).flatten()
            index = ranked.topk(min(self.detections, ranked.numel())).indices
            cells = heat.shape[-2] * heat.shape[-1]
            label, cell = index // cells, index % cells
            row, col = cell // heat.shape[-1], cell % heat.shape[-1]
            w, h = (size[b, :, row, col].exp() * stride).unbind(0)
            cx, cy = (col + 0.5) * stride, (row + 0.5) * stride
            found.append({"boxes": torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1),
                          "labels": label, "scores": scores[b].flatten()[index]})
        return found


def fit_detector(model: SmallDetector, images: torch.Tensor, labels: torch.Tensor, boxes: torch.Tensor, *,
                 epochs: int = 10, lr: float = 3e-3, batch_size: int = 32, seed: int = 0) -> SmallDetector:
    """Train a :class:`SmallDetector` on images (N, 3, H, W) with ``labels`` (N, M) and ``boxes`` (N, M, 4)
    [x0, y0, x1, y1], M objects each: CenterNet's penalty-reduced focal loss on Gaussian centre heat maps
    (σ a sixth of the object's side, in cells) and an L1 loss on the centre cell's log size, trained by
    :func:`~gradcam.apps.synthetic.train.fit` (AdamW, weight decay 0.01). Returns the model in eval mode."""
    if epochs < 1 or not len(images) == len(labels) == len(boxes) or labels.shape != boxes.shape[:2]:
        raise DataError(f"fit_detector needs epochs >= 1 and labels (N, M), boxes (N, M, 4) for N images, got "
                        f"{epochs}, {tuple(images.shape)}, {tuple(labels.shape)}, {tuple(boxes.shape)}")
    def centre_loss(output, rows):
        heat, size = output
        return _centre_loss(heat, size, labels[rows], boxes[rows].float(), images.shape[-1] / heat.shape[-1])

    return fit(model, images, labels, epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=0.01, seed=seed,
               loss=centre_loss)


def _centre_loss(heat, size, labels, boxes, stride):
    """CenterNet's focal loss on the heat maps plus the L1 loss on the log sizes at the centres."""
    batch, _, h, w = heat.shape
    centre = (boxes[..., :2] + boxes[..., 2:] + 1) / 2 / stride  # (B, M, 2) in cells
    side = (boxes[..., 2:] - boxes[..., :2] + 1) / stride  # (B, M, 2) in cells
    cell = centre.floor().long().clamp(min=0, max=min(h, w) - 1)
    sigma = (side.mean(-1) / 6).clamp(min=0.5)  # (B, M)
    ys, xs = torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32)
    dist = ((xs[None, None, None, :] - cell[..., 0, None, None]) ** 2
            + (ys[None, None, :, None] - cell[..., 1, None, None]) ** 2)
    gauss = torch.exp(-dist / (2 * sigma[..., None, None] ** 2))  # (B, M, h, w)
    target = torch.zeros_like(heat)
    for m in range(labels.shape[1]):
        index = labels[:, m].view(-1, 1, 1, 1).expand(-1, 1, h, w)
        target.scatter_reduce_(1, index, gauss[:, m:m + 1], reduce="amax")
    p = torch.sigmoid(heat).clamp(1e-4, 1 - 1e-4)
    positive = target == 1
    focal = torch.where(positive, -torch.log(p) * (1 - p) ** 2, -torch.log(1 - p) * p ** 2 * (1 - target) ** 4)
    rows = torch.arange(batch)[:, None].expand_as(labels)
    predicted = size.permute(0, 2, 3, 1)[rows, cell[..., 1], cell[..., 0]]  # (B, M, 2)
    return focal.sum() / labels.numel() + 0.1 * (predicted - side.log()).abs().mean()

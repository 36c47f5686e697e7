"""Tiny seeded networks with the outputs of other tasks (a segmenter's dict, a one-logit head, DETR's
queries), importable by the tests and loadable by path as ``task_nets.py:Class``."""

import torch
from torch import nn


class Segmenter(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.classifier = nn.Conv2d(6, 3, 1)

    def forward(self, x):
        return {"out": self.classifier(self.features(x))}


class Head(nn.Module):
    def __init__(self, outputs=4):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1))
        self.fc = nn.Linear(8, outputs)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


class Binary(Head):
    def __init__(self):
        super().__init__(1)


class DETR(nn.Module):
    def __init__(self, queries=4, classes=3):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.logits = nn.Linear(32, queries * (classes + 1))
        self.boxes = nn.Linear(32, queries * 4)
        self.q, self.k = queries, classes

    def forward(self, x):
        pooled = nn.functional.adaptive_avg_pool2d(self.features(x), 2).flatten(1)
        return {"pred_logits": self.logits(pooled).view(-1, self.q, self.k + 1),
                "pred_boxes": self.boxes(pooled).view(-1, self.q, 4).sigmoid() * 0.5 + 0.25}

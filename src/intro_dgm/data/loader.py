"""A fast in-memory batch loader: batches sliced from a tensor, reshuffled every epoch by the
loader's own seeded generator. For data this small a ``torch.utils.data.DataLoader`` spends
most of its time collating single rows; slicing a shuffled tensor is several times faster.
"""
from __future__ import annotations

import torch

from ..utils import check_int


class TensorLoader:
    """Iterate over ``data`` in mini-batches, reshuffled every epoch by its own generator.

    Args:
        data: ``(N, ...)`` tensor.
        batch_size: rows per batch (the last batch may be smaller).
        shuffle: reshuffle every epoch.
        seed: seed of the loader's generator (same seed -> same order of batches).
    """

    def __init__(self, data: torch.Tensor, batch_size: int = 64, shuffle: bool = False,
                 seed: int = 0):
        if not isinstance(data, torch.Tensor):
            raise TypeError(f"data must be a torch.Tensor, got {type(data).__name__}")
        if data.dim() < 1 or data.shape[0] == 0:
            raise ValueError(f"data must have at least one row, got shape {tuple(data.shape)}")
        self.data = data
        self.batch_size = check_int(batch_size, "batch_size", minimum=1)
        self.shuffle = shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-self.data.shape[0] // self.batch_size)

    def __iter__(self):
        n = self.data.shape[0]
        if self.shuffle:
            data = self.data[torch.randperm(n, generator=self.generator)]
        else:
            data = self.data
        for start in range(0, n, self.batch_size):
            yield data[start:start + self.batch_size]

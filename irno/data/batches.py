"""Batches of a training or evaluation dataset: which samples form each batch, and reading them.

The permutation of epoch e is a pure function of (seed, e), so a resumed training sees the same
batches as an uninterrupted one without any sampler state; each batch's indices are sorted, as
memory-mapped stores read faster in order (a batch's loss does not depend on its order). A dataset
with a vectorised ``batch(indices)`` method (the prepared stores) is read a whole batch at a time;
any other torch Dataset of ``{"x", "h0", "y"}`` items goes through a collating DataLoader.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import DataLoader, Dataset


def epoch_batches(n_samples: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The shuffled global batches of `epoch`: a pure function of (seed, epoch), each batch sorted."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n_samples)
    return [np.sort(order[i : i + batch_size]) for i in range(0, n_samples, batch_size)]


def sequential_batches(indices: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """`indices` cut into consecutive batches, in order (validation and evaluation)."""
    return [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]


class _WholeBatches(Dataset):
    """Item i is ``dataset.batch(batches[i])``: a vectorised gather instead of per-item collation."""

    def __init__(self, dataset, batches: list[np.ndarray]):
        self.dataset, self.batches = dataset, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int):
        return self.dataset.batch(self.batches[i])


def iterate_batches(
    dataset, batches: list[np.ndarray], *, num_workers: int = 0, pin_memory: bool = False
) -> Iterator[tuple]:
    """Yield (x, h0 or None, y) CPU tensors for each index batch, in order."""
    if hasattr(dataset, "batch"):
        loader = DataLoader(
            _WholeBatches(dataset, batches), batch_size=None, num_workers=num_workers, pin_memory=pin_memory
        )
    else:
        loader = DataLoader(
            dataset, batch_sampler=[b.tolist() for b in batches], num_workers=num_workers, pin_memory=pin_memory
        )
    for item in loader:
        if isinstance(item, dict):
            yield item["x"], item.get("h0"), item["y"]
        elif len(item) == 3:
            yield item
        else:
            yield item[0], None, item[1]

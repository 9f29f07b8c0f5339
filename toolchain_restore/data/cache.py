"""A least-recently-used cache of decoded images bounded by bytes, not by count."""

from __future__ import annotations

from collections import OrderedDict
from typing import Hashable

import numpy as np

__all__ = ["ImageCache"]


class ImageCache:
    """Keeps images until their total size exceeds ``max_bytes`` (the newest always stays)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self.nbytes = 0

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> np.ndarray | None:
        image = self._items.get(key)
        if image is not None:
            self._items.move_to_end(key)
        return image

    def put(self, key: Hashable, image: np.ndarray) -> None:
        self._items[key] = image
        self.nbytes += image.nbytes
        while self.nbytes > self.max_bytes and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self.nbytes -= old.nbytes

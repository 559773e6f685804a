"""The one cache helper of the app: bounded, thread safe, building each value once.

Traced graphs, optimisers and feature extractors take seconds to build and hold a model's
weights; maps and reports take seconds to compute. Every such cache, in the engine and in the
pages, is a ``BoundedCache``: a least-recently-used map with a size bound, shared by the threads
of the server (Streamlit's script runs and the job queue's workers).
``get_or_build(key, build)`` builds a missing value once, however many threads ask for it at
the same time: the first builds it outside the lock (other keys stay served meanwhile), the
others wait for it. A build that raises leaves nothing behind: the next call builds again.

Keys say what was built for which model: ``ExplorableModel.key``, or ``id(model)`` when the
value holds the model (the id cannot be reused while the entry lives). ``PerModelCache``
holds its models weakly instead, for values that must not keep their model alive.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Callable, Generic, Hashable, TypeVar

V = TypeVar("V")
_MISSING = object()


class _Build:
    """A value one thread is building and others may wait for."""

    def __init__(self):
        self.thread = threading.get_ident()
        self.finished = threading.Event()


class BoundedCache(Generic[V]):
    """A thread-safe map of at most ``max_size`` values; the least recently used goes first.

    Args:
        max_size: how many values are kept (1 or more).
    """

    def __init__(self, max_size: int):
        if max_size < 1:
            raise ValueError(f"A cache holds at least one value, not {max_size}.")
        self.max_size = int(max_size)
        self._values: OrderedDict[Hashable, V] = OrderedDict()
        self._building: dict[Hashable, _Build] = {}
        self._lock = threading.Lock()

    def get_or_build(self, key: Hashable, build: Callable[[], V]) -> V:
        """The value of ``key``; when missing, ``build()``'s, which is then kept.

        While one thread builds a key, other threads asking for it wait and get its value; if
        the build raises, the exception goes to its own caller only and the next caller builds.

        Raises:
            whatever ``build`` raises; RuntimeError: ``build`` asked for its own key.
        """
        while True:
            with self._lock:
                if key in self._values:
                    self._values.move_to_end(key)
                    return self._values[key]
                pending = self._building.get(key)
                if pending is None:
                    pending = self._building[key] = _Build()
                    break
            if pending.thread == threading.get_ident():
                raise RuntimeError(f"Building the cache entry {key!r} needed that entry itself.")
            pending.finished.wait()
        value = _MISSING
        try:
            value = build()
        finally:
            with self._lock:
                del self._building[key]
                if value is not _MISSING:
                    self._store(key, value)
            pending.finished.set()
        return value

    def get(self, key: Hashable, default=None):
        """The value of ``key`` (it counts as a use), or ``default``; nothing is built."""
        with self._lock:
            if key not in self._values:
                return default
            self._values.move_to_end(key)
            return self._values[key]

    def put(self, key: Hashable, value: V) -> None:
        """Keep ``value`` for ``key`` (replacing what was there)."""
        with self._lock:
            self._store(key, value)

    def values(self) -> list[V]:
        """The values kept, least recently used first."""
        with self._lock:
            return list(self._values.values())

    def clear(self) -> None:
        """Forget every value (builds under way still keep theirs when they end)."""
        with self._lock:
            self._values.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)

    def _store(self, key: Hashable, value: V) -> None:
        self._values[key] = value
        self._values.move_to_end(key)
        while len(self._values) > self.max_size:
            self._values.popitem(last=False)


class PerModelCache(Generic[V]):
    """A ``BoundedCache`` of at most ``max_per_model`` values for each model, the model held
    weakly: its values go when it goes (for values that must not keep their model alive).

    Args:
        max_per_model: values kept per model.
    """

    def __init__(self, max_per_model: int):
        self.max_per_model = int(max_per_model)
        self._caches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def of(self, model) -> BoundedCache[V]:
        """The cache of ``model``'s values (made on first use)."""
        with self._lock:
            cache = self._caches.get(model)
            if cache is None:
                cache = self._caches[model] = BoundedCache(self.max_per_model)
            return cache

    def get_or_build(self, model, key: Hashable, build: Callable[[], V]) -> V:
        """``BoundedCache.get_or_build`` in ``model``'s cache."""
        return self.of(model).get_or_build(key, build)

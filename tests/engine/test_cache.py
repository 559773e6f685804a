"""The one cache helper: least-recently-used bound, one build per key across threads, failed
builds not kept, per-model caches that let their model go."""

import gc
import threading
import weakref

import pytest

from engine.cache import BoundedCache, PerModelCache


def _builder(built: list, name: str):
    def build():
        built.append(name)
        return name.upper()

    return build


class _WatchedKey:
    """A key that tells when a second thread looks it up (a cache hashes a key to find it)."""

    def __init__(self):
        self.threads: set[int] = set()
        self.second_thread = threading.Event()
        self._lock = threading.Lock()

    def __hash__(self):
        with self._lock:
            self.threads.add(threading.get_ident())
            if len(self.threads) > 1:
                self.second_thread.set()
        return 1

    def __eq__(self, other):
        return self is other


def _ask_from_two_threads(cache, key, build) -> list:
    outcomes = []

    def ask():
        try:
            outcomes.append(cache.get_or_build(key, build))
        except ValueError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    return outcomes


def test_the_least_recently_used_value_goes_first():
    cache, built = BoundedCache(2), []
    cache.get_or_build("a", _builder(built, "a"))
    cache.get_or_build("b", _builder(built, "b"))
    assert cache.get_or_build("a", _builder(built, "a")) == "A"  # a hit: "a" is now the newest
    cache.get_or_build("c", _builder(built, "c"))  # one over the bound: "b" goes
    assert built == ["a", "b", "c"] and cache.values() == ["A", "C"] and len(cache) == 2
    assert cache.get_or_build("b", _builder(built, "b")) == "B"  # built again
    assert built == ["a", "b", "c", "b"] and cache.values() == ["C", "B"]


def test_get_and_put_count_as_uses_and_keep_the_bound():
    cache = BoundedCache(2)
    assert cache.get("a") is None and cache.get("a", 0) == 0 and len(cache) == 0
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the newest
    cache.put("c", 3)
    assert cache.values() == [1, 3]
    cache.clear()
    assert len(cache) == 0 and cache.get("a") is None


def test_a_cache_holds_at_least_one_value():
    with pytest.raises(ValueError):
        BoundedCache(0)


def test_two_threads_asking_for_the_same_key_build_it_once():
    cache, key, builds = BoundedCache(4), _WatchedKey(), []

    def build():
        builds.append(threading.get_ident())
        assert key.second_thread.wait(30)  # the other thread asks while this one builds
        return "value"

    assert _ask_from_two_threads(cache, key, build) == ["value", "value"]
    assert len(builds) == 1


def test_a_failed_build_is_not_kept():
    cache, built = BoundedCache(2), []

    def failing():
        raise ValueError("no model")

    with pytest.raises(ValueError, match="no model"):
        cache.get_or_build("a", failing)
    assert len(cache) == 0
    assert cache.get_or_build("a", _builder(built, "a")) == "A" and built == ["a"]


def test_a_thread_waiting_for_a_build_that_fails_builds_for_itself():
    cache, key, builds = BoundedCache(4), _WatchedKey(), []

    def build():
        builds.append(threading.get_ident())
        if len(builds) == 1:
            assert key.second_thread.wait(30)  # the other thread is waiting for this build
            raise ValueError("the first build failed")
        return "second build"

    outcomes = _ask_from_two_threads(cache, key, build)
    assert sorted(outcomes) == ["second build", "the first build failed"]
    assert len(builds) == 2 and cache.values() == ["second build"]


def test_a_build_that_needs_its_own_key_is_refused():
    cache = BoundedCache(2)
    with pytest.raises(RuntimeError, match="needed that entry itself"):
        cache.get_or_build("a", lambda: cache.get_or_build("a", lambda: 1))
    assert cache.get_or_build("a", lambda: 2) == 2  # nothing was left half-built


class _Model:
    """Stands for a model: weakly referable, hashed by identity."""


def test_per_model_caches_are_bounded_per_model_and_let_the_model_go():
    cache, built = PerModelCache(1), []
    first, second = _Model(), _Model()
    cache.get_or_build(first, "a", _builder(built, "a"))
    cache.get_or_build(second, "a", _builder(built, "a2"))
    cache.get_or_build(first, "b", _builder(built, "b"))  # "a" of the first model goes
    assert cache.of(first).values() == ["B"] and cache.of(second).values() == ["A2"]
    gone = weakref.ref(first)
    del first
    gc.collect()
    assert gone() is None  # the cache did not keep the model alive

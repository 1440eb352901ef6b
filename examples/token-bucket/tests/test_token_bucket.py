"""Acceptance tests for the token-bucket example (they drive a fake clock, so they are instant)."""

import threading

import pytest

from token_bucket import TokenBucket


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def bucket(capacity=10.0, rate=2.0):
    t = FakeTime()
    return TokenBucket(capacity, rate, clock=t.clock, sleep=t.sleep), t


def test_starts_full():
    b, _ = bucket()
    assert b.available() == pytest.approx(10.0)


@pytest.mark.parametrize("capacity, rate", [(0, 1), (-1, 1), (1, 0), (1, -2)])
def test_rejects_bad_parameters(capacity, rate):
    with pytest.raises(ValueError):
        TokenBucket(capacity, rate)


def test_try_acquire_takes_tokens_until_empty():
    b, _ = bucket(capacity=3, rate=1)
    assert [b.try_acquire() for _ in range(4)] == [True, True, True, False]
    assert b.available() == pytest.approx(0.0)


def test_failed_try_acquire_takes_nothing():
    b, _ = bucket(capacity=5, rate=1)
    assert b.try_acquire(4)
    assert not b.try_acquire(2)
    assert b.available() == pytest.approx(1.0)


@pytest.mark.parametrize("tokens", [0, -1, 11])
def test_try_acquire_rejects_impossible_amounts(tokens):
    b, _ = bucket()
    with pytest.raises(ValueError):
        b.try_acquire(tokens)


def test_refills_with_time_but_not_beyond_capacity():
    b, t = bucket(capacity=10, rate=2)
    assert b.try_acquire(10)
    t.now += 1.5
    assert b.available() == pytest.approx(3.0)
    t.now += 100
    assert b.available() == pytest.approx(10.0)


def test_clock_going_backwards_adds_nothing():
    b, t = bucket(capacity=10, rate=2)
    b.try_acquire(10)
    t.now -= 50
    assert b.available() == pytest.approx(0.0)


def test_time_until():
    b, _ = bucket(capacity=10, rate=2)
    assert b.time_until(5) == 0.0
    b.try_acquire(10)
    assert b.time_until(3) == pytest.approx(1.5)


def test_acquire_sleeps_for_the_missing_tokens():
    b, t = bucket(capacity=10, rate=2)
    b.try_acquire(10)
    assert b.acquire(4)
    assert sum(t.slept) == pytest.approx(2.0)
    assert b.available() == pytest.approx(0.0)


def test_acquire_gives_up_when_the_wait_exceeds_the_timeout():
    b, t = bucket(capacity=10, rate=2)
    b.try_acquire(10)
    assert not b.acquire(4, timeout=1.0)
    assert t.slept == []
    assert b.available() == pytest.approx(0.0)


def test_acquire_with_zero_timeout_is_try_acquire():
    b, t = bucket(capacity=2, rate=1)
    assert b.acquire(2, timeout=0)
    assert not b.acquire(1, timeout=0)
    assert t.slept == []


def test_concurrent_callers_never_overdraw():
    b = TokenBucket(50, 0.000001)
    taken = []
    lock = threading.Lock()

    def worker():
        for _ in range(20):
            if b.try_acquire():
                with lock:
                    taken.append(1)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(taken) == 50

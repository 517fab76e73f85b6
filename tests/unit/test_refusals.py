"""The per-caller buckets that keep a flood of refusals out of the audit log, on a fake clock."""

from plumbing.audit import cap
from plumbing.refusals import OTHERS, RefusalLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_rate_and_the_rest_is_counted() -> None:
    clock = Clock()
    limiter = RefusalLimiter(burst=3, per_minute=60, clock=clock)
    assert [limiter.admit("10.0.0.1", "401") for _ in range(5)] == [True, True, True, False, False]
    assert limiter.admit("10.0.0.2", "401") is True  # another caller has its own bucket
    assert limiter.take("10.0.0.2") == []
    clock.now += 1.0  # one refusal a second
    assert limiter.admit("10.0.0.1", "413") is True
    assert limiter.admit("10.0.0.1", "401") is False
    (gone,) = limiter.take("10.0.0.1")
    assert (gone.caller, gone.count, gone.kinds) == ("10.0.0.1", 3, {"401": 3})
    assert limiter.take("10.0.0.1") == []


def test_counts_of_callers_that_went_quiet_are_handed_over() -> None:
    clock = Clock()
    limiter = RefusalLimiter(burst=1, per_minute=0, quiet_s=60, clock=clock)
    limiter.admit("a", "401")
    limiter.admit("a", "401")
    assert limiter.take() == []
    clock.now += 61
    (gone,) = limiter.take()
    assert (gone.caller, gone.count) == ("a", 1)
    limiter.give_back(gone)  # could not be written: kept for the next try
    (again,) = limiter.take(everything=True)
    assert again.count == 1


def test_a_full_table_sends_new_addresses_to_one_shared_bucket() -> None:
    clock = Clock()
    limiter = RefusalLimiter(burst=1, per_minute=0, max_callers=2, clock=clock)
    for caller in ("a", "b"):
        limiter.admit(caller, "401")
        limiter.admit(caller, "401")  # both busy: they keep their places
    assert limiter.admit("c", "401") is True  # the shared bucket's one token
    assert limiter.admit("d", "401") is False
    assert {g.caller: g.count for g in limiter.take(everything=True)} == {"a": 1, "b": 1, OTHERS: 1}


def test_long_values_are_cut_and_say_how_long_they_were() -> None:
    assert cap("short", 10) == "short"
    cut = cap("x" * 1000, 50)
    assert len(cut) == 50 and cut.endswith("...[1000 chars]")

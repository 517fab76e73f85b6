"""Dropping many instances from the index at once: one transaction, redone after a lost race."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from control import instances
from tests.fakes import FakeStateStore

NOW = datetime.now(UTC)


@dataclasses.dataclass
class RacedStore(FakeStateStore):
    """Before its first `races` transactions, another writer indexes one more instance."""

    races: int = 0
    transactions: int = 0

    def transact(self, puts: dict[str, tuple[Any, str]], deletes: list[str]) -> None:
        self.transactions += 1
        if self.races:
            self.races -= 1
            instances.track(self, f"rival-{self.races}", "wf", "RUNNING", NOW)
        super().transact(puts, deletes)


def indexed(store: FakeStateStore, n: int) -> list[str]:
    ids = [f"wf-{i}" for i in range(n)]
    for iid in ids:
        instances.track(store, iid, "wf", "COMPLETED", NOW)
    return ids


def test_forgetting_many_is_one_transaction_per_80_instances() -> None:
    store = RacedStore()
    ids = indexed(store, 100)
    instances.forget_many(store, ids[:90])
    assert sorted(e.instance_id for e in instances.entries(store)) == sorted(ids[90:])
    assert store.transactions == 2
    instances.forget_many(store, [])
    assert store.transactions == 2


def test_a_shard_written_meanwhile_is_read_again_and_keeps_what_the_other_wrote() -> None:
    store = RacedStore()
    ids = indexed(store, 40)  # every shard holds some
    store.races = 2
    instances.forget_many(store, ids)
    assert sorted(e.instance_id for e in instances.entries(store)) == ["rival-0", "rival-1"]
    assert store.transactions == 3

"""The control plane's ``(kind, namespace, name)`` table behaves as a dict keyed by the tuple."""

from __future__ import annotations

from weir.keyed import KeyTable


def test_key_table_reads_writes_and_deletes_like_a_dict() -> None:
    table: KeyTable[int] = KeyTable()
    table[("Trigger", "b", "y")] = 1
    table[("Trigger", "a", "z")] = 2
    table[("Broker", "a", "default")] = 3
    table[("Trigger", "a", "z")] = 4
    assert len(table) == 3
    assert table[("Trigger", "a", "z")] == 4 and table.get(("Trigger", "a", "q")) is None
    assert table.get(("Sink", "a", "z"), 7) == 7
    assert ("Broker", "a", "default") in table and ("Broker", "b", "default") not in table
    assert not table.__contains__("Broker")
    assert dict(table) == {("Trigger", "b", "y"): 1, ("Trigger", "a", "z"): 4, ("Broker", "a", "default"): 3}
    del table[("Trigger", "b", "y")]
    assert len(table) == 2 and ("Trigger", "b", "y") not in table
    assert repr(table) == "KeyTable({('Trigger', 'a', 'z'): 4, ('Broker', 'a', 'default'): 3})"


def test_sorted_keys_go_by_namespace_then_name() -> None:
    table: KeyTable[int] = KeyTable()
    for key in [("Trigger", "b", "a"), ("Trigger", "a", "t10"), ("Trigger", "a", "t2"), ("Broker", "a", "x")]:
        table[key] = 0
    assert list(table.sorted_keys("Trigger")) == [("Trigger", "a", "t10"), ("Trigger", "a", "t2"),
                                                  ("Trigger", "b", "a")]
    assert list(table.sorted_keys("Trigger", "b")) == [("Trigger", "b", "a")]
    assert list(table.sorted_keys("Sink")) == []

from __future__ import annotations

from pathlib import Path

from orchestrator.intake.duplicates import MAX_ROWS_LISTED, DuplicateCounter


def feed(counter: DuplicateCounter, keys: list[str]) -> None:
    for row, key in enumerate(keys, start=2):
        counter.add(key, row)
        counter.checkpoint()


def test_exact_counting(tmp_path: Path) -> None:
    counter = DuplicateCounter(tmp_path / "d")
    feed(counter, ["a", "b", "a", "c", "a", "b"])
    assert counter.finish() == (
        3,
        [{"value": "a", "rows": [2, 4, 6], "count": 3}, {"value": "b", "rows": [3, 7], "count": 2}],
    )
    assert not (tmp_path / "d").exists()


def test_spilled_counting_resolves_values_and_cleans_up(tmp_path: Path) -> None:
    counter = DuplicateCounter(tmp_path / "d", partitions=4, exact_limit=2)
    # "a" and "b" stay exact; the rest spill as hashes.
    keys = ["a", "b", "c", "d", "a", "c", "e", "c", "d", "f"]
    feed(counter, keys)
    assert counter.spilled
    asked: list[set[int]] = []

    def resolve(rows: set[int]) -> list[tuple[int, str]]:
        asked.append(rows)
        return [(row, keys[row - 2]) for row in sorted(rows)]

    repeats, listed = counter.finish(resolve)
    assert repeats == 4
    assert listed == [
        {"value": "a", "rows": [2, 6], "count": 2},
        {"value": "c", "rows": [4, 7, 9], "count": 3},
        {"value": "d", "rows": [5, 10], "count": 2},
    ]
    assert asked == [{4, 5}]
    assert not (tmp_path / "d").exists()


def test_rows_listed_are_capped(tmp_path: Path) -> None:
    counter = DuplicateCounter(tmp_path / "d")
    feed(counter, ["x"] * (MAX_ROWS_LISTED + 50))
    repeats, listed = counter.finish()
    assert repeats == MAX_ROWS_LISTED + 49
    assert listed[0]["count"] == MAX_ROWS_LISTED + 50
    assert len(listed[0]["rows"]) == MAX_ROWS_LISTED  # type: ignore[arg-type]


def test_repeats_before_and_after_the_spill_merge(tmp_path: Path) -> None:
    counter = DuplicateCounter(tmp_path / "d", partitions=2, exact_limit=3)
    feed(counter, ["a", "a", "b", "c", "a", "b", "x", "x"])  # spills after "c" (row 5)
    repeats, listed = counter.finish(lambda rows: [(r, "x") for r in rows])
    assert repeats == 4
    assert listed == [
        {"value": "a", "rows": [2, 3, 6], "count": 3},
        {"value": "b", "rows": [4, 7], "count": 2},
        {"value": "x", "rows": [8, 9], "count": 2},
    ]


def test_partitions_grow_with_the_file() -> None:
    from orchestrator.intake.duplicates import partitions_for

    assert partitions_for(10_000) == 64
    assert partitions_for(1_000_000_000) == 256
    assert partitions_for(10**13) == 4096

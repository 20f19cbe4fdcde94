"""The dead-letter report: one JSON line per skipped or repaired row, written as it happens."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TextIO

from clipsearch.datasets.records import Action, Rejection


class DeadLetters:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.skipped: Counter[str] = Counter()
        self.repaired: Counter[str] = Counter()
        self._fh: TextIO | None = None

    def add(self, rejection: Rejection) -> None:
        counter = self.skipped if rejection.action == Action.skipped else self.repaired
        counter[rejection.reason.value] += 1
        if self.path is None:
            return
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        self._fh.write(rejection.model_dump_json() + "\n")
        self._fh.flush()

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

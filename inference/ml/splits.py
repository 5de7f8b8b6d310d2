"""Patient-grouped, label-stratified splits: an 80/20 test split and k-fold cross-validation on the rest."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Split:
    test_patients: list[str]
    folds: list[list[str]]  # validation patients of each fold

    def trainval(self) -> list[str]:
        return [p for f in self.folds for p in f]

    def fold_sets(self, k: int) -> tuple[list[str], list[str]]:
        """(train patients, validation patients) of fold ``k``."""
        val = self.folds[k]
        return [p for i, f in enumerate(self.folds) if i != k for p in f], list(val)


def make_split(labels: dict[str, int], *, test_fraction: float = 0.2, n_folds: int = 5, seed: int = 0) -> Split:
    """Split patients (``{pseudo_id: 0|1}``) so that each label is spread evenly over test and folds.

    Grouping is by patient by construction (every image of a patient follows its patient). Seeded.
    """
    if not labels:
        raise ValueError("no labelled patients to split")
    bad = {p: v for p, v in labels.items() if v not in (0, 1)}
    if bad:
        raise ValueError(f"labels must be 0 or 1: {bad}")
    rng = np.random.default_rng(seed)
    test: list[str] = []
    folds: list[list[str]] = [[] for _ in range(n_folds)]
    offset = 0
    for label in (0, 1):
        group = sorted(p for p, v in labels.items() if v == label)
        group = [group[i] for i in rng.permutation(len(group))]
        n_test = int(round(test_fraction * len(group)))
        if test_fraction > 0 and n_test == 0 and len(group) >= 2:
            n_test = 1
        test += group[:n_test]
        for i, p in enumerate(group[n_test:]):  # round robin, continuing where the other label stopped
            folds[(offset + i) % n_folds].append(p)
        offset += len(group) - n_test
    empty = [k for k, f in enumerate(folds) if not f]
    if empty:
        raise ValueError(f"too few patients ({len(labels)}) for {n_folds} folds and a {test_fraction:.0%} test split")
    return Split(sorted(test), [sorted(f) for f in folds])


def extend_split(split: Split, labels: dict[str, int], *, test_fraction: float = 0.2, seed: int = 0) -> Split:
    """``split`` with the patients of ``labels`` (``{pseudo_id: 0|1}``) it lacks added, every patient it holds left
    where it is (a test patient never becomes a training one, so runs on either split stay free of leakage).

    Per label, new patients go to the test set until it holds ``round(test_fraction * n)`` of that label's ``n``
    patients (current labels; never fewer than it already has), the rest one by one to the fold with the fewest
    patients of that label (then the fewest patients, then the first). Seeded; patients of ``split`` missing from
    ``labels`` stay in it. Raises ValueError for a label other than 0 or 1."""
    bad = {p: v for p, v in labels.items() if v not in (0, 1)}
    if bad:
        raise ValueError(f"labels must be 0 or 1: {bad}")
    test = list(split.test_patients)
    folds = [list(f) for f in split.folds]
    placed = set(test) | {p for f in folds for p in f}
    rng = np.random.default_rng([seed, len(placed)])
    for label in (0, 1):
        new = sorted(p for p, v in labels.items() if v == label and p not in placed)
        if not new:
            continue
        new = [new[i] for i in rng.permutation(len(new))]
        n_label = sum(1 for p, v in labels.items() if v == label)
        in_test = sum(1 for p in test if labels.get(p) == label)
        n_test = min(len(new), max(0, int(round(test_fraction * n_label)) - in_test))
        test += new[:n_test]
        for p in new[n_test:]:
            k = min(range(len(folds)), key=lambda i: (sum(labels.get(q) == label for q in folds[i]), len(folds[i]), i))
            folds[k].append(p)
    return Split(sorted(test), [sorted(f) for f in folds])

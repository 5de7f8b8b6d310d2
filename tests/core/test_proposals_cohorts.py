"""Atlas proposals on synthetic cohorts the atlases never saw (the shipped synthetic atlases are seeds
7100003-7100029, see scripts/build_proposal_atlases.py): gland and lesion voxels inside their side's box, no side
over 70 mm, on whole scans, on slabs that stop below the lungs, and on scans cut to one gland (the other side "not
covered" with a note); chest-only and pelvis-only scans "not covered" with what is missing.

``test_fresh_cohort_every_gland_and_lesion_inside`` (fast) asserts every side of every scan on seeds 4300-4311,
which were not looked at while the proposer was fixed (the fixes were measured on seeds 501-520, 4100-4111 and
4200-4211, see the README). The slow cohorts (seeds 3000-3399, tiny/demo/default profiles and ``--base real``)
assert every side too.
"""
from __future__ import annotations

import numpy as np
import pytest

from inference.ml.proposals import MAX_SIDE_MM, propose
from synthetic import make_patient
from synthetic.tissues import LABEL_OF
from tests.plugins.proposals import crop, synthetic_truth

MIN_SHARE = 1.0  # of sides with every gland and lesion voxel inside
FRESH_SEEDS = range(4300, 4312)


def side_misses(result, side: str, points: np.ndarray, what: str) -> str:
    """'' when every point is inside the side's box; else what went wrong. Box sizes are asserted outright."""
    sp = result.sides[side]
    if sp.status != "proposed" or sp.box is None:
        return f"{what} {side}: not proposed ({sp.note or result.reason})"
    assert np.all(sp.box.size_mm <= MAX_SIDE_MM + 1e-6), (what, side, sp.box.size_mm)
    assert sp.method.startswith("atlas") and 0.0 <= sp.confidence <= 1.0
    inside = sp.box.contains(points)
    return "" if inside.all() else f"{what} {side}: {np.count_nonzero(~inside)} of {len(points)} voxels outside"


def assert_side_covers(result, side: str, points: np.ndarray, what: str) -> None:
    miss = side_misses(result, side, points, what)
    assert not miss, miss


def check_scan(scan, what: str, misses: list, **cut) -> int:
    """Sides checked; their misses appended to ``misses``."""
    result = propose(crop(scan.volume, **cut) if cut else scan.volume)
    n = 0
    for side in ("R", "L"):
        pts = synthetic_truth(scan, side, **cut)
        if len(pts):
            n += 1
            miss = side_misses(result, side, pts, what)
            if miss:
                misses.append(miss)
    return n


def assert_share(n: int, misses: list, min_share: float = MIN_SHARE) -> None:
    assert n and (n - len(misses)) / n >= min_share, f"{n - len(misses)}/{n} sides covered; misses: {misses}"


@pytest.mark.slow
@pytest.mark.parametrize("profile, seeds", [("tiny", range(3000, 3012)), ("demo", range(3100, 3104)),
                                            ("default", range(3200, 3206))])
def test_whole_scans(profile, seeds):
    n, misses = 0, []
    for seed in seeds:
        scan = make_patient(seed, abnormal=seed % 2 == 1, profile=profile,
                            coverage=None if profile != "default" else ("abdomen", "upper_abdomen", "cap")[seed % 3])
        n += check_scan(scan, f"{profile} {seed}", misses)
    assert_share(n, misses)


@pytest.mark.slow
def test_real_base_with_lesions(realct):
    """Lesions grown into the real example CT (its own atlas left out: the anatomy is then new to every atlas
    but the synthetic ones, so this checks the lesion handling and the selection of atlases, not the anatomy)."""
    from synthetic.real_base import make_real_patient

    for seed in range(3300, 3304):
        scan = make_real_patient(seed, abnormal=True, fixtures_dir=realct["seg_dir"])
        result = propose(scan.volume)
        for side in ("R", "L"):
            assert_side_covers(result, side, synthetic_truth(scan, side), f"real base {seed}")


@pytest.mark.slow
def test_slabs_that_stop_below_the_lungs():
    """Every slice with lung removed: the glands' lower parts remain, and are boxed (no "no lungs" refusal)."""
    n, misses = 0, []
    for seed in range(3010, 3018):
        scan = make_patient(seed, abnormal=seed % 2 == 1, profile="tiny")
        n += check_scan(scan, f"slab {seed}", misses, **slab_below_the_lungs(scan))
    assert n >= 3  # the slabs do hold glands (3 sides of 16 on these seeds: synthetic lungs reach low)
    assert_share(n, misses)


def check_one_gland_cuts(scan, what: str, misses: list) -> int:
    """Cut between the glands: the remaining side is boxed (misses appended), the other is "not covered" with a
    note saying it is outside the field of view. Sides checked."""
    x_mid = (scan.truth.glands["R"].lps_max[0] + scan.truth.glands["L"].lps_min[0]) / 2
    i_cut = int(round((x_mid - scan.volume.affine[0, 3]) / scan.volume.affine[0, 0]))
    for keep, other, cut in (("R", "L", {"i": slice(0, i_cut)}), ("L", "R", {"i": slice(i_cut, None)})):
        result = propose(crop(scan.volume, **cut))
        assert result.status == "proposed", (what, keep, result.reason)
        miss = side_misses(result, keep, synthetic_truth(scan, keep, **cut), f"{what} {keep} only")
        if miss:
            misses.append(miss)
        assert result.sides[other].status == "not_covered" and other not in result.boxes, (what, keep)
        assert "outside the field of view" in result.sides[other].note, result.sides[other].note
    return 2


def slab_below_the_lungs(scan) -> dict:
    """The crop of every slice below the lowest one with lung."""
    lung = np.nonzero((scan.labels == LABEL_OF["lung"]).any(axis=(1, 2)))[0]
    return {"k": slice(0, int(lung.min()))}


@pytest.mark.slow
def test_scans_of_one_gland():
    """Cut between the glands: the remaining side is boxed, the other is "not covered" with a note."""
    n, misses = 0, []
    for seed in range(3020, 3026):
        scan = make_patient(seed, abnormal=seed % 2 == 1, profile="tiny")
        n += check_one_gland_cuts(scan, f"one gland {seed}", misses)
    assert_share(n, misses)


def test_fresh_cohort_every_gland_and_lesion_inside():
    """Seeds no one tuned on (tiny profile, every other patient with a lesion): per seed the whole scan and the
    slab below the lungs, and on every third seed the scan cut to each gland. Every gland and lesion voxel inside
    its side's box and every side <= 70 mm, on every scan; a chest-only and a pelvis-only scan "not covered"."""
    n, misses, slab_sides = 0, [], 0
    for seed in FRESH_SEEDS:
        scan = make_patient(seed, abnormal=seed % 2 == 1, profile="tiny")
        n += check_scan(scan, f"whole {seed}", misses)
        slab = check_scan(scan, f"slab {seed}", misses, **slab_below_the_lungs(scan))
        n, slab_sides = n + slab, slab_sides + slab
        if seed % 3 == 0:
            n += check_one_gland_cuts(scan, f"seed {seed}", misses)
    assert slab_sides >= 2, "the slabs below the lungs should hold some gland"
    assert not misses, f"{n - len(misses)}/{n} sides covered; misses: {misses}"
    for seed, coverage, words in ((4390, "chest_only", "chest only"), (4391, "pelvis_only", "below")):
        result = propose(make_patient(seed, abnormal=False, profile="tiny", coverage=coverage).volume)
        assert result.status == "not_covered" and not result.boxes, (seed, result.to_dict())
        assert result.reason.startswith("adrenal region") and words in result.reason, result.reason


def test_chest_and_pelvis_only_not_covered():
    for seed, coverage, words in ((3030, "chest_only", "chest only"), (3031, "pelvis_only", "below"),
                                  (3032, "chest_only", "chest only"), (3033, "pelvis_only", "below")):
        for profile in ("tiny", "default"):
            result = propose(make_patient(seed, abnormal=False, profile=profile, coverage=coverage).volume)
            assert result.status == "not_covered" and not result.boxes, (seed, profile, result.to_dict())
            assert result.reason.startswith("adrenal region") and words in result.reason, result.reason
            assert all(p.status == "not_covered" and p.note for p in result.sides.values())

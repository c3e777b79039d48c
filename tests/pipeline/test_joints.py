"""Joint conventions: the spin-49 index maps of datasets.md §1.13, by name, with masks."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.joints import CONVENTIONS, from_spin49, joint_names, permutation, to_spin49

# datasets.md §1.13, `spin_idx <- src_idx`, written out independently of the name lists.
EXPECTED_MAPS = {
    "mpii3d": {25: 25, 26: 24, 27: 23, 28: 18, 29: 19, 30: 20, 31: 16, 32: 15, 33: 14, 34: 9,
               35: 10, 36: 11, 37: 5, 38: 7, 39: 4, 41: 3, 43: 6},
    "mpii3d_test": {25: 10, 26: 9, 27: 8, 28: 11, 29: 12, 30: 13, 31: 4, 32: 3, 33: 2, 34: 5,
                    35: 6, 36: 7, 37: 1, 38: 0, 39: 14, 41: 15, 43: 16},
    "h36m": {25: 6, 26: 5, 27: 4, 28: 1, 29: 2, 30: 3, 31: 16, 32: 15, 33: 14, 34: 11, 35: 12,
             36: 13, 37: 8, 38: 10, 39: 0, 41: 7, 43: 9},
    "posetrack": {25: 16, 26: 14, 27: 12, 28: 11, 29: 13, 30: 15, 31: 10, 32: 8, 33: 6, 34: 5,
                  35: 7, 36: 9, 37: 1, 38: 2, 44: 0, 47: 3, 48: 4},
    "pennaction": {25: 12, 26: 10, 27: 8, 28: 7, 29: 9, 30: 11, 31: 6, 32: 4, 33: 2, 34: 1,
                   35: 3, 36: 5, 38: 0},
    "insta": {0: 14, 1: 12, 2: 8, 3: 7, 4: 6, 5: 9, 6: 10, 7: 11, 9: 2, 10: 1, 11: 24, 12: 3,
              13: 4, 14: 23, 15: 16, 16: 15, 17: 18, 18: 17, 19: 19, 20: 21, 21: 5, 22: 20,
              23: 22, 24: 0, 38: 13},
    "common": {25 + i: i for i in range(14)},
}  # fmt: skip


@pytest.mark.parametrize("convention", sorted(EXPECTED_MAPS))
def test_to_spin49_matches_reference_index_map(convention: str) -> None:
    count = len(CONVENTIONS[convention])
    joints = np.arange(count * 3, dtype=np.float32).reshape(1, count, 3) + 1.0
    out, mask = to_spin49(joints, convention)
    expected = EXPECTED_MAPS[convention]
    assert out.shape == (1, 49, 3)
    assert set(np.flatnonzero(mask)) == set(expected)
    for spin, src in expected.items():
        np.testing.assert_array_equal(out[0, spin], joints[0, src])
    assert not out[0, ~mask].any()


def test_3dpw_perm_to_common_matches_vibe() -> None:
    assert permutation("3dpw", "common") == [10, 9, 8, 11, 12, 13, 4, 3, 2, 5, 6, 7]
    assert permutation("pennaction", "common") == [12, 10, 8, 7, 9, 11, 6, 4, 2, 1, 3, 5, 0]


def test_penn_labellings_swap_left_and_right() -> None:
    joints = np.zeros((13, 2))
    joints[1] = (5.0, 6.0)  # index 1: left shoulder (vibe) / right shoulder (hmmr)
    vibe, _ = to_spin49(joints, "pennaction")
    hmmr, _ = to_spin49(joints, "pennaction_hmmr")
    assert tuple(vibe[34]) == (5.0, 6.0) and not vibe[33].any()
    assert tuple(hmmr[33]) == (5.0, 6.0) and not hmmr[34].any()


def test_round_trip_and_unmapped_joints_masked() -> None:
    rng = np.random.default_rng(0)
    joints = rng.normal(size=(4, 28, 3))
    spin, _ = to_spin49(joints, "mpii3d")
    back, mask = from_spin49(spin, "mpii3d")
    assert mask.sum() == 17  # the clavicles, hands, feet, toes and spine2-4 have no slot
    np.testing.assert_array_equal(back[:, mask], joints[:, mask])
    assert not back[:, ~mask].any()


def test_h36m_raw32_uses_spin_selection() -> None:
    raw = np.arange(32, dtype=float)[:, None].repeat(3, axis=1)
    out, mask = to_spin49(raw, "h36m_raw32")
    assert mask.sum() == 17
    assert out[39, 0] == 11 and out[37, 0] == 24 and out[38, 0] == 15  # pelvis, neck, headtop


def test_unknown_name_raises_never_drops() -> None:
    with pytest.raises(KeyError, match="'left_pinky'"):
        to_spin49(np.zeros((2, 3)), ["rankle", "left_pinky"])
    with pytest.raises(KeyError, match="unknown joint convention"):
        joint_names("lsp_extended")


def test_wrong_joint_count_raises() -> None:
    with pytest.raises(ValueError, match="17 joints"):
        to_spin49(np.zeros((5, 14, 3)), "h36m")


def test_every_convention_resolves() -> None:
    for name in CONVENTIONS:
        assert len(joint_names(name)) == len(CONVENTIONS[name])

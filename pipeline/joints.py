"""Named joint conventions of the six datasets and conversion to and from the 49-joint layout.

Every list of `datasets.md` §1 is a tuple of joint names. A joint that has a slot in the
store's 49-joint SPIN layout carries that slot's name (`storage.layout.SPIN_JOINT_NAMES`), so
conversion is by name, never by hand-written index lists. A joint without a slot (a clavicle,
a toe tip, a duplicated raw H36M joint) carries a name from `UNMAPPED`: it is dropped on
purpose, and that list says so. Any other name is an error, never a silently lost joint.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from storage.layout import NUM_JOINTS, SPIN_JOINT_NAMES

SPIN_INDEX: dict[str, int] = {name: i for i, name in enumerate(SPIN_JOINT_NAMES)}

# Raw Human3.6M 32-joint names (metadata.xml order); several are duplicates of others.
_H36M_RAW_NAMES: tuple[str, ...] = (
    "Hips", "RightUpLeg", "RightLeg", "RightFoot", "RightToeBase", "Site", "LeftUpLeg",
    "LeftLeg", "LeftFoot", "LeftToeBase", "Site", "Spine", "Spine1", "Neck", "Head", "Site",
    "LeftShoulder", "LeftArm", "LeftForeArm", "LeftHand", "LeftHandThumb", "Site",
    "L_Wrist_End", "Site", "RightShoulder", "RightArm", "RightForeArm", "RightHand",
    "RightHandThumb", "Site", "R_Wrist_End", "Site",
)  # fmt: skip
# SPIN's `h36m_idx`: the raw joints kept for the 17 H36M joints (VIBE order), by spin name.
_H36M_RAW_KEPT: dict[int, str] = {
    11: "hip", 6: "lhip", 7: "lknee", 8: "lankle", 1: "rhip", 2: "rknee", 3: "rankle",
    12: "Spine (H36M)", 24: "neck", 14: "Head (H36M)", 15: "headtop", 17: "lshoulder",
    18: "lelbow", 19: "lwrist", 25: "rshoulder", 26: "relbow", 27: "rwrist",
}  # fmt: skip
_H36M_RAW: tuple[str, ...] = tuple(
    _H36M_RAW_KEPT.get(i, f"h36m raw {i} {name}") for i, name in enumerate(_H36M_RAW_NAMES)
)

# Joints of dataset lists that have no slot among the 49: dropped deliberately.
_DROPPED: tuple[str, ...] = (
    # MPI-INF-3DHP (28)
    "spine3", "spine4", "spine2", "left_clavicle", "left_hand", "right_clavicle",
    "right_hand", "left_foot", "left_toe", "right_foot", "right_toe",
    # SMPL (24) joints the 49-joint map does not take from the skeleton
    "smpl spine1", "smpl spine2", "smpl spine3", "smpl left_foot", "smpl right_foot",
    "smpl left_collar", "smpl right_collar", "smpl head", "smpl left_hand", "smpl right_hand",
)  # fmt: skip
UNMAPPED: frozenset[str] = frozenset(_DROPPED) | {
    name for name in _H36M_RAW if name.startswith("h36m raw ")
}

# Penn Action's 13 joints: one index layout, two left/right labellings in the literature
# (datasets.md §1.8). "vibe" (person-left first, also mmhuman3d) is the default;
# "hmmr" (HMMR read_upenn.py, right first) is the alternative.
PENN_ACTION_LABELLINGS: dict[str, str] = {"vibe": "pennaction", "hmmr": "pennaction_hmmr"}

CONVENTIONS: dict[str, tuple[str, ...]] = {
    "spin": SPIN_JOINT_NAMES,
    "openpose25": SPIN_JOINT_NAMES[:25],
    "common": SPIN_JOINT_NAMES[25:39],
    # Standard SMPL order; the skeleton joints the SPIN map reads go to their OpenPose slots.
    "smpl": (
        "OP MidHip", "OP LHip", "OP RHip", "smpl spine1", "OP LKnee", "OP RKnee",
        "smpl spine2", "OP LAnkle", "OP RAnkle", "smpl spine3", "smpl left_foot",
        "smpl right_foot", "OP Neck", "smpl left_collar", "smpl right_collar", "smpl head",
        "OP LShoulder", "OP RShoulder", "OP LElbow", "OP RElbow", "OP LWrist", "OP RWrist",
        "smpl left_hand", "smpl right_hand",
    ),
    # VIBE order = rows of J_regressor_h36m.
    "h36m": (
        "hip", "lhip", "lknee", "lankle", "rhip", "rknee", "rankle", "Spine (H36M)", "neck",
        "Head (H36M)", "headtop", "lshoulder", "lelbow", "lwrist", "rshoulder", "relbow",
        "rwrist",
    ),
    # G. Moon's JSON (I2L-MeshNet order): legs right first; Nose/Head_top are raw 14/15.
    "h36m_moon": (
        "hip", "rhip", "rknee", "rankle", "lhip", "lknee", "lankle", "Spine (H36M)", "neck",
        "Head (H36M)", "headtop", "lshoulder", "lelbow", "lwrist", "rshoulder", "relbow",
        "rwrist",
    ),
    "h36m_raw32": _H36M_RAW,
    "mpii3d": (
        "spine3", "spine4", "spine2", "Spine (H36M)", "hip", "neck", "Head (H36M)", "headtop",
        "left_clavicle", "lshoulder", "lelbow", "lwrist", "left_hand", "right_clavicle",
        "rshoulder", "relbow", "rwrist", "right_hand", "lhip", "lknee", "lankle", "left_foot",
        "left_toe", "rhip", "rknee", "rankle", "right_foot", "right_toe",
    ),
    "mpii3d_test": (
        "headtop", "neck", "rshoulder", "relbow", "rwrist", "lshoulder", "lelbow", "lwrist",
        "rhip", "rknee", "rankle", "lhip", "lknee", "lankle", "hip", "Spine (H36M)",
        "Head (H36M)",
    ),
    "pennaction": (
        "headtop", "lshoulder", "rshoulder", "lelbow", "relbow", "lwrist", "rwrist", "lhip",
        "rhip", "lknee", "rknee", "lankle", "rankle",
    ),
    "pennaction_hmmr": (
        "headtop", "rshoulder", "lshoulder", "relbow", "lelbow", "rwrist", "lwrist", "rhip",
        "lhip", "rknee", "lknee", "rankle", "lankle",
    ),
    # PoseTrack 2018 (head_bottom -> neck, head_top -> headtop; ears are placeholders).
    "posetrack": (
        "nose", "neck", "headtop", "lear", "rear", "lshoulder", "rshoulder", "lelbow",
        "relbow", "lwrist", "rwrist", "lhip", "rhip", "lknee", "rknee", "lankle", "rankle",
    ),
    "posetrack2017": (
        "rankle", "rknee", "rhip", "lhip", "lknee", "lankle", "rwrist", "relbow", "rshoulder",
        "lshoulder", "lelbow", "lwrist", "neck", "nose", "headtop",
    ),
    # HMMR "universal 25" as VIBE names it (heels in the first 14, Head -> headtop).
    "insta": (
        "OP RHeel", "OP RKnee", "OP RHip", "OP LHip", "OP LKnee", "OP LHeel", "OP RWrist",
        "OP RElbow", "OP RShoulder", "OP LShoulder", "OP LElbow", "OP LWrist", "OP Neck",
        "headtop", "OP Nose", "OP LEye", "OP REye", "OP LEar", "OP REar", "OP LBigToe",
        "OP RBigToe", "OP LSmallToe", "OP RSmallToe", "OP LAnkle", "OP RAnkle",
    ),
    # 3DPW poses2d (OpenPose COCO-18); VIBE names index 1 `thorax` (datasets.md §10.14).
    "3dpw": (
        "nose", "thorax", "rshoulder", "relbow", "rwrist", "lshoulder", "lelbow", "lwrist",
        "rhip", "rknee", "rankle", "lhip", "lknee", "lankle", "reye", "leye", "rear", "lear",
    ),
    "coco": (
        "nose", "leye", "reye", "lear", "rear", "lshoulder", "rshoulder", "lelbow", "relbow",
        "lwrist", "rwrist", "lhip", "rhip", "lknee", "rknee", "lankle", "rankle",
    ),
    "mpii": (
        "rankle", "rknee", "rhip", "lhip", "lknee", "lankle", "hip", "thorax", "neck",
        "headtop", "rwrist", "relbow", "rshoulder", "lshoulder", "lelbow", "lwrist",
    ),
    "smplcoco": (*SPIN_JOINT_NAMES[25:39], "nose", "leye", "reye", "lear", "rear"),
}  # fmt: skip


def joint_names(convention: str | Sequence[str]) -> tuple[str, ...]:
    """The names of a convention (by key) or of an explicit list, each checked to map."""
    if isinstance(convention, str):
        if convention not in CONVENTIONS:
            raise KeyError(
                f"unknown joint convention {convention!r}; known: {', '.join(CONVENTIONS)}"
            )
        names = CONVENTIONS[convention]
    else:
        names = tuple(convention)
    for name in names:
        if name not in SPIN_INDEX and name not in UNMAPPED:
            raise KeyError(
                f"joint {name!r} has no slot in the 49-joint layout and is not listed as "
                "deliberately unmapped (pipeline.joints.UNMAPPED)"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"joint convention {convention!r} names a joint twice")
    return names


def _pairs(names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(source indices, spin indices) of the joints that have a slot."""
    src = [i for i, name in enumerate(names) if name in SPIN_INDEX]
    dst = [SPIN_INDEX[names[i]] for i in src]
    return np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)


def _check_count(joints: np.ndarray, count: int, convention: str | Sequence[str]) -> None:
    if joints.ndim < 2 or joints.shape[-2] != count:
        raise ValueError(
            f"joints of shape {joints.shape} do not have {count} joints on axis -2 "
            f"as convention {convention if isinstance(convention, str) else 'given'} needs"
        )


def to_spin49(joints: np.ndarray, convention: str | Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Joints [..., K, C] of a convention placed into [..., 49, C] (zeros elsewhere).

    Returns the array and a bool mask [49] of the slots the convention provides.
    """
    names = joint_names(convention)
    joints = np.asarray(joints)
    _check_count(joints, len(names), convention)
    src, dst = _pairs(names)
    out = np.zeros((*joints.shape[:-2], NUM_JOINTS, joints.shape[-1]), dtype=joints.dtype)
    out[..., dst, :] = joints[..., src, :]
    mask = np.zeros(NUM_JOINTS, dtype=bool)
    mask[dst] = True
    return out, mask


def from_spin49(
    joints: np.ndarray, convention: str | Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Joints [..., 49, C] picked into a convention's order [..., K, C].

    Returns the array and a bool mask [K] of the joints the 49-joint layout holds; the
    unmapped ones are zeros.
    """
    names = joint_names(convention)
    joints = np.asarray(joints)
    _check_count(joints, NUM_JOINTS, "spin")
    src, dst = _pairs(names)
    out = np.zeros((*joints.shape[:-2], len(names), joints.shape[-1]), dtype=joints.dtype)
    out[..., src, :] = joints[..., dst, :]
    mask = np.zeros(len(names), dtype=bool)
    mask[src] = True
    return out, mask


def permutation(source: str | Sequence[str], target: str | Sequence[str]) -> list[int]:
    """Indices into `source` of the `target` joints it has, in target order (VIBE's perm)."""
    src_names = joint_names(source)
    return [src_names.index(name) for name in joint_names(target) if name in src_names]

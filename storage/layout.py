"""The store's joint layout: the 49-joint SPIN convention every array in a store uses.

Living in `storage` (which depends on nothing of ours) lets the pipeline, which writes
these arrays, and the model, which supervises on them, share one definition.
"""

from __future__ import annotations

# Index i of every [.., 49, ..] array in a store is joint SPIN_JOINT_NAMES[i]
# (VIBE short names for 25..48; 0..24 are OpenPose BODY_25 with an "OP " prefix).
SPIN_JOINT_NAMES: tuple[str, ...] = (
    "OP Nose", "OP Neck", "OP RShoulder", "OP RElbow", "OP RWrist",
    "OP LShoulder", "OP LElbow", "OP LWrist", "OP MidHip", "OP RHip",
    "OP RKnee", "OP RAnkle", "OP LHip", "OP LKnee", "OP LAnkle",
    "OP REye", "OP LEye", "OP REar", "OP LEar", "OP LBigToe",
    "OP LSmallToe", "OP LHeel", "OP RBigToe", "OP RSmallToe", "OP RHeel",
    "rankle", "rknee", "rhip", "lhip", "lknee",
    "lankle", "rwrist", "relbow", "rshoulder", "lshoulder",
    "lelbow", "lwrist", "neck", "headtop", "hip",
    "thorax", "Spine (H36M)", "Jaw (H36M)", "Head (H36M)", "nose",
    "leye", "reye", "lear", "rear",
)  # fmt: skip
NUM_JOINTS = len(SPIN_JOINT_NAMES)

# The 14 `common` (LSP-order) joints used by the 3D loss and the evaluation: spin[25:39].
COMMON_JOINTS = slice(25, 39)
# Within the 14 common joints, the pelvis is the mean of rhip (2) and lhip (3).
COMMON_PELVIS = (2, 3)

# Rows of J_regressor_h36m (VIBE h36m order) picked to give the 14 common joints, then
# pelvis, spine, head for the 17-joint variant.
H36M_TO_J17: tuple[int, ...] = (6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10, 0, 7, 9)
H36M_TO_J14: tuple[int, ...] = H36M_TO_J17[:14]

SEQLEN = 16
MID_FRAME = SEQLEN // 2
FEATURE_DIM = 2048

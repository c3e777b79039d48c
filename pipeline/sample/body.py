"""A synthetic, human-like SMPL body in the official SMPL model layout.

The licensed SMPL model can never ship with the project, yet every test of the SMPL layer,
the regressor and the pipeline needs one. This module builds a stand-in with the exact
array names, shapes and dtypes of the official files (6890 vertices, 13776 triangles, 24
joints on the standard kinematic tree) and a plausible 1.73 m T-posed person in metres
(y up, facing +z, the person's left on +x), so that posed meshes, projected joints and
metric values behave like real ones.

Construction: six closed capsules (torso, head, two arms, two legs) swept along polylines
through the rest joints. Every joint lies on a ring of vertices centred on it, so the
`J_regressor` row that averages that ring gives the joint exactly; vertices are skinned to
the bone they surround, blended across joints. smplx picks 21 "vertex joints" (nose, eyes,
ears, toes, heels, fingertips) by fixed vertex ids; the vertices are permuted so that those
ids sit on the right body parts. The two extra regressors (`J_regressor_extra`, 9 rows, and
`J_regressor_h36m`, 17 rows, in the orders of tcmr.md §2.6 / §3.4) are returned in the same
dict under `joint_regressor_extra` / `joint_regressor_h36m`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse
from scipy.spatial import cKDTree

NUM_VERTICES = 6890
NUM_FACES = 13776
NUM_JOINTS = 24
ROOT_PARENT = np.uint32(4294967295)

# Standard SMPL kinematic tree (parent of each of the 24 joints; -1 for the pelvis).
PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21,
)  # fmt: skip

# Rest joints of the person's centre line and left side (metres); right = mirrored x.
_CENTRE_JOINTS: dict[int, tuple[float, float, float]] = {
    0: (0.0, -0.22, 0.02),
    3: (0.0, -0.11, -0.005),
    6: (0.0, 0.03, 0.025),
    9: (0.0, 0.08, 0.03),
    12: (0.0, 0.29, 0.01),
    15: (0.0, 0.36, 0.06),
}
_LEFT_JOINTS: dict[int, tuple[float, float, float]] = {
    1: (0.07, -0.31, 0.01),
    4: (0.10, -0.70, 0.01),
    7: (0.09, -1.11, -0.03),
    10: (0.11, -1.17, 0.10),
    13: (0.075, 0.20, 0.01),
    16: (0.17, 0.23, -0.015),
    18: (0.43, 0.22, -0.035),
    20: (0.68, 0.22, -0.035),
    22: (0.77, 0.21, -0.05),
}
_MIRROR: dict[int, int] = {1: 2, 4: 5, 7: 8, 10: 11, 13: 14, 16: 17, 18: 19, 20: 21, 22: 23}

# smplx's vertex ids of the 21 extra joints (`smplx.vertex_ids['smplh']`), as fixed ids.
VERTEX_JOINT_IDS: dict[str, int] = {
    "nose": 332, "reye": 6260, "leye": 2800, "rear": 4071, "lear": 583,
    "rthumb": 6191, "rindex": 5782, "rmiddle": 5905, "rring": 6016, "rpinky": 6133,
    "lthumb": 2746, "lindex": 2319, "lmiddle": 2445, "lring": 2556, "lpinky": 2673,
    "LBigToe": 3216, "LSmallToe": 3226, "LHeel": 3387,
    "RBigToe": 6617, "RSmallToe": 6624, "RHeel": 6787,
}  # fmt: skip


@dataclass(frozen=True)
class _Point:
    """A polyline point: position, ring radii (along the frame normal, binormal), the joint
    whose bone starts here (skinning owner of the next segment), the joint located here."""

    xyz: tuple[float, float, float]
    radii: tuple[float, float]
    owner: int
    joint: int | None = None
    rings_after: int = 0  # ring intervals on the segment to the next point


@dataclass(frozen=True)
class _Part:
    """One closed capsule: poles at the first and last point, rings at the others."""

    name: str
    around: int
    normal0: tuple[float, float, float]
    points: tuple[_Point, ...]


def _joint_xyz(j: int) -> tuple[float, float, float]:
    if j in _CENTRE_JOINTS:
        return _CENTRE_JOINTS[j]
    if j in _LEFT_JOINTS:
        return _LEFT_JOINTS[j]
    left = next(k for k, v in _MIRROR.items() if v == j)
    x, y, z = _LEFT_JOINTS[left]
    return (-x, y, z)


def _rest_joints() -> np.ndarray:
    return np.array([_joint_xyz(j) for j in range(NUM_JOINTS)], dtype=np.float64)


def _jp(j: int, radii: tuple[float, float], owner: int, rings: int) -> _Point:
    return _Point(_joint_xyz(j), radii, owner, j, rings)


def _parts() -> list[_Part]:
    """The body plan. Ring counts are chosen so the vertex total is exactly 6890."""
    torso = _Part(
        "torso",
        63,
        (1.0, 0.0, 0.0),
        (
            _Point((0.0, -0.37, 0.015), (0.0, 0.0), 0, None, 4),
            _jp(0, (0.165, 0.11), 0, 5),
            _jp(3, (0.15, 0.10), 3, 6),
            _jp(6, (0.145, 0.105), 6, 2),
            _jp(9, (0.16, 0.11), 9, 6),
            _Point((0.0, 0.22, 0.01), (0.175, 0.10), 9, None, 4),
            _jp(12, (0.065, 0.06), 12, 2),
            _Point((0.0, 0.33, 0.01), (0.0, 0.0), 12),
        ),
    )
    head = _Part(
        "head",
        48,
        (1.0, 0.0, 0.0),
        (
            _Point((0.0, 0.27, 0.015), (0.0, 0.0), 12, None, 3),
            _jp(15, (0.075, 0.09), 15, 5),
            _Point((0.0, 0.44, 0.04), (0.09, 0.10), 15, None, 6),
            _Point((0.0, 0.53, 0.03), (0.0, 0.0), 15),
        ),
    )

    def leg(side: float) -> _Part:
        j = (lambda left: left) if side > 0 else (lambda left: _MIRROR[left])
        return _Part(
            "leg",
            32,
            (side, 0.0, 0.0),
            (
                _Point((0.065 * side, -0.22, 0.015), (0.0, 0.0), j(1), None, 3),
                _jp(j(1), (0.085, 0.085), j(1), 17),
                _jp(j(4), (0.055, 0.06), j(4), 17),
                _jp(j(7), (0.042, 0.045), j(7), 5),
                _jp(j(10), (0.045, 0.03), j(10), 4),
                _Point((0.115 * side, -1.18, 0.20), (0.0, 0.0), j(10)),
            ),
        )

    def arm(side: float) -> _Part:
        j = (lambda left: left) if side > 0 else (lambda left: _MIRROR[left])
        return _Part(
            "arm",
            23,
            (0.0, 1.0, 0.0),
            (
                _Point((0.03 * side, 0.21, 0.0), (0.0, 0.0), j(13), None, 2),
                _jp(j(13), (0.05, 0.05), j(13), 4),
                _jp(j(16), (0.055, 0.055), j(16), 12),
                _jp(j(18), (0.042, 0.042), j(18), 11),
                _jp(j(20), (0.028, 0.032), j(20), 4),
                _jp(j(22), (0.018, 0.045), j(22), 3),
                _Point((0.86 * side, 0.21, -0.05), (0.0, 0.0), j(22)),
            ),
        )

    return [torso, head, leg(1.0), leg(-1.0), arm(1.0), arm(-1.0)]


@dataclass
class _Mesh:
    """Raw vertices before the vertex-joint permutation, with per-vertex construction data."""

    vertices: np.ndarray  # (V, 3)
    radial: np.ndarray  # (V, 3) unit outward direction
    weights: np.ndarray  # (V, 24)
    faces: list[tuple[int, int, int]]
    joint_rings: dict[int, np.ndarray]  # joint -> vertex ids of its ring
    named_rings: dict[str, np.ndarray]  # "head_mid", "thorax" -> vertex ids
    wrist_rings: list[np.ndarray]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _sweep(part: _Part, mesh: _Mesh, rng: np.random.Generator, scale: np.ndarray) -> None:
    """Append one capsule: rings swept with a parallel-transported frame, poles at the ends."""
    pts = [np.array(p.xyz) * scale for p in part.points]
    # Ring stations: (position, radii, tangent, segment index, fraction, point index or None).
    stations: list[tuple[np.ndarray, np.ndarray, np.ndarray, int, float, int | None]] = []
    for i in range(len(pts) - 1):
        a, b = pts[i], pts[i + 1]
        ra, rb = np.array(part.points[i].radii), np.array(part.points[i + 1].radii)
        n_int = part.points[i].rings_after
        for k in range(n_int):
            if i == 0 and k == 0:
                continue  # the start pole
            f = k / n_int
            if k == 0:
                prev_dir = _unit(pts[i] - pts[i - 1])
                tangent = _unit(prev_dir + _unit(b - a))
                radii = ra
            else:
                tangent = _unit(b - a)
                radii = ra + (rb - ra) * f
                if i == 0:  # rounded end cap towards the pole
                    radii = rb * np.sqrt(1.0 - (1.0 - f) ** 2)
                if i == len(pts) - 2:
                    radii = ra * np.sqrt(1.0 - f**2)
            stations.append((a + (b - a) * f, radii, tangent, i, f, i if k == 0 else None))
    jitter = 1.0 + 0.03 * rng.standard_normal(len(stations))

    base = len(mesh.vertices)
    n = part.around
    theta = 2.0 * np.pi * np.arange(n) / n
    normal = np.array(part.normal0, dtype=np.float64)
    verts, radial, weights = [], [], []
    for s, (pos, radii, tangent, seg, frac, point_idx) in enumerate(stations):
        normal = _unit(normal - normal.dot(tangent) * tangent)
        binormal = np.cross(tangent, normal)
        r = radii * (1.0 if point_idx is not None else jitter[s])
        offs = np.outer(np.cos(theta) * r[0], normal) + np.outer(np.sin(theta) * r[1], binormal)
        verts.append(pos + offs)
        radial.append(offs / np.linalg.norm(offs, axis=1, keepdims=True))
        weights.append(np.repeat(_skin(part, seg, frac)[None], n, axis=0))
        if point_idx is not None:
            ids = base + s * n + np.arange(n)
            joint = part.points[point_idx].joint
            if joint is not None:
                mesh.joint_rings[joint] = ids
            elif part.name == "head":
                mesh.named_rings["head_mid"] = ids
            elif part.name == "torso":
                mesh.named_rings["thorax"] = ids
            if joint in (20, 21):
                mesh.wrist_rings.append(ids)
    n_rings = len(stations)
    poles = np.stack([pts[0], pts[-1]])
    pole_dirs = np.stack([_unit(pts[0] - pts[1]), _unit(pts[-1] - pts[-2])])
    pole_w = np.stack([_skin(part, 0, 0.0), _skin(part, len(pts) - 2, 1.0)])
    mesh.vertices = np.concatenate([mesh.vertices, *verts, poles])
    mesh.radial = np.concatenate([mesh.radial, *radial, pole_dirs])
    mesh.weights = np.concatenate([mesh.weights, *weights, pole_w])

    p0, p1 = base + n_rings * n, base + n_rings * n + 1
    for r in range(n_rings - 1):
        for k in range(n):
            a, b = base + r * n + k, base + r * n + (k + 1) % n
            c, d = a + n, b + n
            mesh.faces += [(a, b, c), (b, d, c)]
    last = base + (n_rings - 1) * n
    for k in range(n):
        mesh.faces.append((p0, base + (k + 1) % n, base + k))
        mesh.faces.append((p1, last + k, last + (k + 1) % n))


def _skin(part: _Part, seg: int, frac: float) -> np.ndarray:
    """Skinning weights of a ring on segment `seg` at fraction `frac`: the segment's owner,
    blended half-and-half with the neighbouring segment's owner at each interior point."""
    w = np.zeros(NUM_JOINTS)
    owner = part.points[seg].owner
    blend = 0.3
    w[owner] = 1.0
    if frac < blend and seg > 0 and part.points[seg - 1].owner != owner:
        f = 0.5 + 0.5 * frac / blend
        w[owner], w[part.points[seg - 1].owner] = f, 1.0 - f
    elif frac > 1.0 - blend and seg + 1 < len(part.points) - 1:
        nxt = part.points[seg + 1].owner
        if nxt != owner:
            f = 0.5 + 0.5 * (1.0 - frac) / blend
            w[owner], w[nxt] = f, 1.0 - f
    return w


def _build_mesh(seed: int, scale: np.ndarray) -> _Mesh:
    rng = np.random.default_rng(seed)
    mesh = _Mesh(
        vertices=np.zeros((0, 3)),
        radial=np.zeros((0, 3)),
        weights=np.zeros((0, NUM_JOINTS)),
        faces=[],
        joint_rings={},
        named_rings={},
        wrist_rings=[],
    )
    for part in _parts():
        _sweep(part, mesh, rng, scale)
    # Two-sided septa inside the wrists (5 + 5 triangles each) bring the triangle count of
    # six closed capsules (2V - 24) to SMPL's 13776 while leaving the enclosed volume as is.
    for ring in mesh.wrist_rings:
        corners = ring[np.round(np.arange(7) * len(ring) / 7).astype(int)]
        for k in range(1, 6):
            tri = (int(corners[0]), int(corners[k]), int(corners[k + 1]))
            mesh.faces += [tri, (tri[0], tri[2], tri[1])]
    return mesh


def _vertex_joint_targets(joints: np.ndarray) -> dict[str, np.ndarray]:
    """Where each smplx vertex joint belongs on this body (nearest vertex is taken)."""
    head = joints[15]
    targets: dict[str, np.ndarray] = {
        "nose": head + np.array([0.0, 0.04, 0.12]),
        "leye": head + np.array([0.035, 0.07, 0.10]),
        "reye": head + np.array([-0.035, 0.07, 0.10]),
        "lear": head + np.array([0.10, 0.05, -0.02]),
        "rear": head + np.array([-0.10, 0.05, -0.02]),
    }
    for side, prefix, hand, foot, ankle in (
        (1.0, "l", 22, 10, 7),
        (-1.0, "r", 23, 11, 8),
    ):
        tip = joints[hand] + np.array([0.09 * side, 0.0, 0.0])
        for k, finger in enumerate(("thumb", "index", "middle", "ring", "pinky")):
            targets[prefix + finger] = tip + np.array(
                [-0.03 * side * (k == 0), 0.0, 0.04 - 0.02 * k]
            )
        big = "LBigToe" if side > 0 else "RBigToe"
        small = "LSmallToe" if side > 0 else "RSmallToe"
        heel = "LHeel" if side > 0 else "RHeel"
        toe = joints[foot] + np.array([0.0, -0.02, 0.10])
        targets[big] = toe + np.array([-0.03 * side, 0.0, 0.0])
        targets[small] = toe + np.array([0.04 * side, 0.0, -0.02])
        targets[heel] = joints[ankle] + np.array([0.0, -0.06, -0.06])
    return targets


def _vertex_permutation(mesh: _Mesh, joints: np.ndarray) -> np.ndarray:
    """perm[new] = old, placing each smplx vertex-joint id on its body part."""
    perm = np.arange(len(mesh.vertices))
    where = np.arange(len(mesh.vertices))  # where[old] = new
    tree = cKDTree(mesh.vertices)
    taken: set[int] = set()
    targets = _vertex_joint_targets(joints)
    for name, new_id in VERTEX_JOINT_IDS.items():
        _, candidates = tree.query(targets[name], k=16)
        old = next(int(c) for c in candidates if int(c) not in taken)
        taken.add(old)
        pos = where[old]
        displaced = perm[new_id]
        perm[new_id], perm[pos] = old, displaced
        where[old], where[displaced] = new_id, pos
    return perm


def _ring_rows(rings: list[np.ndarray], coeffs: list[float]) -> np.ndarray:
    row = np.zeros(NUM_VERTICES)
    for ids, c in zip(rings, coeffs, strict=True):
        row[ids] += c / len(ids)
    return row


def _near_row(vertices: np.ndarray, point: np.ndarray, k: int = 10) -> np.ndarray:
    row = np.zeros(NUM_VERTICES)
    _, ids = cKDTree(vertices).query(point, k=k)
    row[ids] = 1.0 / k
    return row


def _shapedirs(mesh: _Mesh, joints: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ten smooth shape directions: height, girth (most on the trunk), leg length, shoulder
    width, then six low-frequency fields of decreasing amplitude (a few cm per unit beta,
    like SMPL's)."""
    v, radial = mesh.vertices, mesh.radial
    pelvis_y = joints[0, 1]
    dirs = np.zeros((NUM_VERTICES, 3, 10))
    dirs[:, 1, 0] = 0.04 * (v[:, 1] - pelvis_y)
    dirs[:, 0, 0] = 0.01 * v[:, 0]
    dirs[:, :, 1] = 0.012 * radial * (1.0 + 1.5 * np.exp(-((v[:, 0:1] / 0.15) ** 2)))
    below = np.clip(pelvis_y - v[:, 1], 0.0, None)
    dirs[:, 1, 2] = -0.03 * below
    upper = np.clip(v[:, 1] / 0.3, 0.0, 1.0)  # fades in from the waist to the shoulders
    dirs[:, 0, 3] = 0.03 * v[:, 0] * upper
    for k in range(4, 10):
        freq = rng.normal(size=(3, 3)) * 2.0
        phase = rng.uniform(0, 2 * np.pi, size=3)
        field = np.sin(v @ freq.T + phase)
        dirs[:, :, k] = (0.006 / (k - 2)) * field
    return dirs


def _posedirs(mesh: _Mesh, rng: np.random.Generator) -> np.ndarray:
    """Pose correctives: vertices bulge along their outward direction with the rotation of
    the joints they are skinned to (about a centimetre per unit of R - I)."""
    coeff = 0.01 * rng.standard_normal((NUM_JOINTS - 1, 9))
    dirs = np.zeros((NUM_VERTICES, 3, (NUM_JOINTS - 1) * 9))
    for j in range(1, NUM_JOINTS):
        w = mesh.weights[:, j]
        for m in range(9):
            dirs[:, :, 9 * (j - 1) + m] = (w * coeff[j - 1, m])[:, None] * mesh.radial
    return dirs


_GENDER_SCALE: dict[str, tuple[float, float, float]] = {
    "neutral": (1.0, 1.0, 1.0),
    "male": (1.04, 1.04, 1.02),
    "female": (0.97, 0.95, 0.98),
}


def synthetic_smpl_arrays(
    seed: int = 0, gender: str = "neutral"
) -> dict[str, np.ndarray | scipy.sparse.spmatrix]:
    """The arrays of an official SMPL model file, for a synthetic person.

    Keys: `v_template (6890,3)`, `shapedirs (6890,3,10)`, `posedirs (6890,3,207)`,
    `J_regressor` (24,6890) csc, `weights (6890,24)`, `kintree_table (2,24)` uint32,
    `f (13776,3)` uint32, `J (24,3)`, and the two dense extra regressors
    `joint_regressor_extra (9,6890)` / `joint_regressor_h36m (17,6890)` that the base-data
    folder stores as `J_regressor_extra.npy` / `J_regressor_h36m.npy`. Deterministic in
    (seed, gender); genders differ in proportions (male taller and broader, female smaller).
    """
    if gender not in _GENDER_SCALE:
        raise ValueError(f"gender must be one of {sorted(_GENDER_SCALE)}, got {gender!r}")
    rng = np.random.default_rng(seed)
    scale = np.array(_GENDER_SCALE[gender]) * (1.0 + 0.01 * rng.standard_normal(3))
    mesh = _build_mesh(seed, scale)
    if len(mesh.vertices) != NUM_VERTICES or len(mesh.faces) != NUM_FACES:
        raise AssertionError(f"body plan gives {len(mesh.vertices)} vertices, {len(mesh.faces)}")
    joints = _rest_joints() * scale

    perm = _vertex_permutation(mesh, joints)
    where = np.empty_like(perm)
    where[perm] = np.arange(len(perm))
    mesh.vertices = mesh.vertices[perm]
    mesh.radial, mesh.weights = mesh.radial[perm], mesh.weights[perm]
    faces = where[np.array(mesh.faces, dtype=np.int64)].astype(np.uint32)
    rings = {j: where[ids] for j, ids in mesh.joint_rings.items()}
    named = {k: where[ids] for k, ids in mesh.named_rings.items()}

    regressor = np.stack([_ring_rows([rings[j]], [1.0]) for j in range(NUM_JOINTS)])
    v = mesh.vertices
    top = _near_row(v, np.array([0.0, 0.53, 0.03]) * scale)
    jaw = _near_row(v, joints[15] + np.array([0.0, -0.02, 0.08]))
    spine = _ring_rows([rings[3], rings[6]], [0.5, 0.5])
    head_mid = _ring_rows([named["head_mid"]], [1.0])
    extra = np.stack(
        [
            _ring_rows([rings[2]], [1.0]),  # Right Hip
            _ring_rows([rings[1]], [1.0]),  # Left Hip
            _ring_rows([rings[12]], [1.0]),  # Neck (LSP)
            top,  # Top of Head (LSP)
            _ring_rows([rings[0]], [1.0]),  # Pelvis (MPII)
            _ring_rows([named["thorax"]], [1.0]),  # Thorax (MPII)
            spine,  # Spine (H36M)
            jaw,  # Jaw (H36M)
            head_mid,  # Head (H36M)
        ]
    )
    h36m_joints = (0, 1, 4, 7, 2, 5, 8, None, 12, None, None, 16, 18, 20, 17, 19, 21)
    h36m = np.stack(
        [
            spine if i == 7 else head_mid if i == 9 else top if i == 10 else regressor[j]
            for i, j in enumerate(h36m_joints)
        ]
    )
    sparse_regressor = scipy.sparse.csc_matrix(regressor)
    return {
        "v_template": v.copy(),
        "shapedirs": _shapedirs(mesh, joints, rng),
        "posedirs": _posedirs(mesh, rng),
        "J_regressor": sparse_regressor,
        "weights": mesh.weights.copy(),
        "kintree_table": np.array(
            [[ROOT_PARENT if p < 0 else p for p in PARENTS], range(NUM_JOINTS)], dtype=np.uint32
        ),
        "f": faces,
        "J": regressor @ v,
        "joint_regressor_extra": extra,
        "joint_regressor_h36m": h36m,
    }


def symmetric_vertex_ids(vertices: np.ndarray) -> np.ndarray:
    """For each vertex, the vertex nearest to its mirror image (the `vert_sym_idxs` field)."""
    mirrored = vertices * np.array([-1.0, 1.0, 1.0])
    _, ids = cKDTree(vertices).query(mirrored)
    return ids.astype(np.int64)

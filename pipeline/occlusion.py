"""Synthetic occlusion of person crops (TCMR `_occ_utils.py`, after Sárándi's synthetic-occlusion).

The occluded feature variants (`*_occ_db.pt`) were made by pasting PASCAL VOC object cut-outs
over each 224 crop before normalisation. The bank is built once per VOC root by the official
rules and cached; each frame's occluders are drawn from a generator seeded by (seed, sequence
key, frame index), so a re-run or a resumed run reproduces the same pixels.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from storage.errors import FormatError, MissingFileError

log = logging.getLogger(__name__)

MIN_MASK_PIXELS = 500
BORDER_ALPHA = 192
BANK_DOWNSCALE = 0.5
MAX_OCCLUDERS = 7
SCALE_RANGE = (0.2, 1.0)
REFERENCE_SIZE = 256.0
NEGATIVE_SEED_TAG = 0x6E6567
"""Leads the generator entropy of a negative seed, which numpy's SeedSequence refuses."""
_ERODE_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (8, 8))


@dataclass(frozen=True)
class OccluderBank:
    """RGBA uint8 cut-outs, a content hash for provenance, and where they came from.

    The hash is prefixed with the kind (`voc:…` / `procedural:…`) so a store's provenance
    names which bank made its occlusions.
    """

    occluders: tuple[np.ndarray, ...]
    content_hash: str
    kind: str
    """`voc` (PASCAL VOC 2012 objects) or `procedural` (random textured shapes)."""

    def __len__(self) -> int:
        return len(self.occluders)

    @classmethod
    def from_arrays(cls, occluders: list[np.ndarray], kind: str) -> OccluderBank:
        if not occluders:
            raise ValueError(f"an occluder bank of kind {kind!r} needs at least one occluder")
        digest = hashlib.sha256(kind.encode())
        for occluder in occluders:
            digest.update(np.asarray(occluder.shape, dtype=np.int64).tobytes())
            digest.update(np.ascontiguousarray(occluder).tobytes())
        return cls(tuple(occluders), f"{kind}:{digest.hexdigest()}", kind)


def _resize_by_factor(image: np.ndarray, factor: float) -> np.ndarray:
    """Resize like the official helper: area filter to shrink, linear to enlarge."""
    height, width = image.shape[:2]
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    interpolation = cv2.INTER_LINEAR if factor > 1.0 else cv2.INTER_AREA
    return cv2.resize(image, size, interpolation=interpolation)


def soft_alpha(mask: np.ndarray) -> np.ndarray:
    """uint8 0/255 mask -> alpha with the outer border (lost to an 8x8 ellipse erosion) at 192."""
    alpha = mask.copy()
    eroded = cv2.erode(mask, _ERODE_KERNEL)
    alpha[eroded < mask] = BORDER_ALPHA
    return alpha


def _text(node: ET.Element, tag: str, path: Path) -> str:
    child = node.find(tag)
    if child is None or child.text is None:
        raise FormatError(f"{path}: missing <{tag}> (field: {tag})")
    return child.text.strip()


def _objects_in(annotation: Path) -> tuple[str, list[tuple[int, tuple[int, int, int, int]]]]:
    """Image file name and the (object index, box) pairs the official rules keep."""
    try:
        root = ET.parse(annotation).getroot()
    except ET.ParseError as error:
        raise FormatError(f"{annotation}: not valid XML ({error})") from error
    segmented = root.find("segmented")
    if segmented is None or (segmented.text or "0").strip() == "0":
        return "", []
    kept = []
    for index, obj in enumerate(root.findall("object")):
        # Persons are kept, as in TCMR's released data (Sárándi's original drops them).
        if _text(obj, "difficult", annotation) != "0" or _text(obj, "truncated", annotation) != "0":
            continue
        box = obj.find("bndbox")
        if box is None:
            raise FormatError(f"{annotation}: object {index} has no <bndbox> (field: bndbox)")
        coords = tuple(
            int(float(_text(box, k, annotation))) for k in ("xmin", "ymin", "xmax", "ymax")
        )
        kept.append((index, coords))
    return _text(root, "filename", annotation), kept


def _read_voc_image(path: Path, annotation: Path, labels: bool) -> np.ndarray:
    """RGB pixels of a JPEG, or the object indices of a palette PNG; a broken file names itself."""
    if not path.is_file():
        raise MissingFileError(f"{path}: referenced by {annotation} but not found")
    try:
        with Image.open(path) as handle:
            if not labels:
                return np.asarray(handle.convert("RGB"))
            if handle.mode not in ("P", "L"):
                raise FormatError(
                    f"{path}: expected a palette PNG of object indices, got mode {handle.mode}"
                )
            return np.asarray(handle)
    except (OSError, SyntaxError) as error:  # PIL: unidentified, truncated or broken data
        raise FormatError(f"{path}: not a readable image ({error}) (field: pixels)") from error


def _occluders_from_annotation(voc_root: Path, annotation: Path) -> list[np.ndarray]:
    filename, objects = _objects_in(annotation)
    if not objects:
        return []
    image_path = voc_root / "JPEGImages" / filename
    labels_path = voc_root / "SegmentationObject" / (Path(filename).stem + ".png")
    image = _read_voc_image(image_path, annotation, labels=False)
    labels = _read_voc_image(labels_path, annotation, labels=True)
    if image.shape[:2] != labels.shape[:2]:
        raise FormatError(
            f"{image_path} is {image.shape[1]}x{image.shape[0]} but its object indices "
            f"{labels_path} are {labels.shape[1]}x{labels.shape[0]} (field: size)"
        )
    result = []
    for index, (xmin, ymin, xmax, ymax) in objects:
        mask = (labels[ymin:ymax, xmin:xmax] == index + 1).astype(np.uint8) * 255
        if cv2.countNonZero(mask) < MIN_MASK_PIXELS:
            continue
        rgba = np.concatenate([image[ymin:ymax, xmin:xmax], soft_alpha(mask)[..., None]], axis=-1)
        result.append(_resize_by_factor(rgba, BANK_DOWNSCALE))
    return result


def _listing_hash(voc_root: Path, annotations: list[Path]) -> str:
    digest = hashlib.sha256(str(voc_root.resolve()).encode())
    for path in annotations:
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def _save_bank(path: Path, bank: OccluderBank) -> None:
    shapes = np.array([o.shape for o in bank.occluders], dtype=np.int64)
    flat = np.concatenate([o.reshape(-1) for o in bank.occluders])
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, shapes=shapes, flat=flat, kind=np.array(bank.kind))
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _load_bank(path: Path) -> OccluderBank | None:
    """The cached bank, or None when the file is unreadable (it is rebuilt and replaced)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            shapes, flat, kind = data["shapes"], data["flat"], str(data["kind"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None
    if shapes.ndim != 2 or len(shapes) == 0 or shapes.shape[1] != 3 or (shapes < 1).any():
        return None
    sizes = np.prod(shapes, axis=1)
    if int(sizes.sum()) != flat.size:
        return None
    pieces = np.split(flat, np.cumsum(sizes)[:-1])
    return OccluderBank.from_arrays(
        [p.reshape(tuple(s)) for p, s in zip(pieces, shapes, strict=True)], kind
    )


def load_voc_occluders(voc_root: Path, cache_dir: Path | None = None) -> OccluderBank:
    """Occluder bank from a PASCAL VOC 2012 root by the official rules, cached per root.

    The cache file name carries a hash of the root path and its annotation listing, so a
    changed VOC copy builds a new bank instead of reusing a stale one; an unreadable cache
    file (a cut-off copy) is rebuilt, and an unwritable cache folder only logs a warning.
    The last bank also stays in memory, so a build's shards (or a read-only VOC copy's,
    which has no cache) get it without reading or building it again. A missing, corrupt or
    truncated image of a kept object is a FormatError naming it: a bank silently short of
    objects would change the occlusions.
    """
    voc_root = Path(voc_root)
    annotation_dir = voc_root / "Annotations"
    if not annotation_dir.is_dir():
        raise MissingFileError(f"{annotation_dir}: not found; expected a PASCAL VOC 2012 root")
    annotations = sorted(annotation_dir.glob("*.xml"))
    listing = _listing_hash(voc_root, annotations)
    if listing in _LAST_BANK:
        return _LAST_BANK[listing]
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"voc-occluders-{listing}.npz"
        cached = _load_bank(cache) if cache.is_file() else None
        if cached is not None:
            return _remember(listing, cached)
    occluders = [o for a in annotations for o in _occluders_from_annotation(voc_root, a)]
    if not occluders:
        raise FormatError(
            f"{voc_root}: no annotation yields an occluder (segmented, not difficult, not "
            f"truncated, >= {MIN_MASK_PIXELS} mask pixels)"
        )
    bank = OccluderBank.from_arrays(occluders, "voc")
    if cache is not None:
        try:
            _save_bank(cache, bank)
        except OSError as error:  # a read-only VOC copy still gives its occluders
            log.warning("%s: occluder bank not cached (%s)", cache, error)
    return _remember(listing, bank)


_LAST_BANK: dict[str, OccluderBank] = {}
"""The VOC bank this process loaded last, by its listing hash (one entry: banks are large)."""


def _remember(listing: str, bank: OccluderBank) -> OccluderBank:
    _LAST_BANK.clear()
    _LAST_BANK[listing] = bank
    return bank


def seed_entropy(seed: int) -> list[int]:
    """Generator entropy for any integer seed (`--seed -1` included).

    A non-negative seed is used as it is, so the occlusions of existing stores stay the same.
    """
    return [seed] if seed >= 0 else [NEGATIVE_SEED_TAG, -seed]


def procedural_occluders(seed: int, n: int = 64) -> OccluderBank:
    """Random textured shapes with soft alpha, for runs without a VOC root (samples, tests).

    Sized like halved VOC objects (tens to ~150 px), so the same placement rule gives a
    similar amount of occlusion.
    """
    rng = np.random.default_rng(seed_entropy(seed))
    occluders = []
    for _ in range(n):
        height, width = (int(v) for v in rng.integers(40, 150, size=2))
        mask = np.zeros((height, width), dtype=np.uint8)
        if rng.random() < 0.5:
            center = (width // 2, height // 2)
            axes = (max(4, width // 2 - 2), max(4, height // 2 - 2))
            angle = float(rng.uniform(0, 180))
            cv2.ellipse(mask, center, axes, angle, 0, 360, 255, thickness=-1)
        else:
            count = int(rng.integers(3, 8))
            points = rng.uniform([0, 0], [width - 1, height - 1], size=(count, 2))
            hull = cv2.convexHull(points.astype(np.int32))
            cv2.fillConvexPoly(mask, hull, 255)
        base = rng.integers(0, 256, size=3)
        texture = rng.normal(0, 40, size=(height // 4 + 1, width // 4 + 1, 3))
        texture = cv2.resize(texture, (width, height), interpolation=cv2.INTER_LINEAR)
        rgb = np.clip(base + texture, 0, 255).astype(np.uint8)
        occluders.append(np.concatenate([rgb, soft_alpha(mask)[..., None]], axis=-1))
    return OccluderBank.from_arrays(occluders, "procedural")


def frame_rng(seed: int, sequence_key: str, frame: int) -> np.random.Generator:
    """The generator for one frame: same (seed, sequence, frame) -> same occluders."""
    key = int.from_bytes(hashlib.sha256(sequence_key.encode()).digest()[:8], "little")
    return np.random.default_rng([*seed_entropy(seed), key, frame])


def paste_over(source_rgba: np.ndarray, target: np.ndarray, center_xy: np.ndarray) -> None:
    """Alpha-blend an RGBA cut-out into `target` (in place) centred at `center_xy`, clipped."""
    src_h, src_w = source_rgba.shape[:2]
    dst_h, dst_w = target.shape[:2]
    cx, cy = (int(v) for v in np.round(center_xy))
    x0, y0 = cx - src_w // 2, cy - src_h // 2
    tx0, ty0 = max(x0, 0), max(y0, 0)
    tx1, ty1 = min(x0 + src_w, dst_w), min(y0 + src_h, dst_h)
    if tx0 >= tx1 or ty0 >= ty1:
        return
    piece = source_rgba[ty0 - y0 : ty1 - y0, tx0 - x0 : tx1 - x0]
    alpha = piece[..., 3:4].astype(np.float32) / 255.0
    region = target[ty0:ty1, tx0:tx1].astype(np.float32)
    blended = alpha * piece[..., :3].astype(np.float32) + (1.0 - alpha) * region
    target[ty0:ty1, tx0:tx1] = blended.astype(target.dtype)


def occlude(crop: np.ndarray, bank: OccluderBank, rng: np.random.Generator) -> np.ndarray:
    """A copy of `crop` with 1-7 occluders at random scale and centre (the official rule)."""
    result = crop.copy()
    height, width = crop.shape[:2]
    size_factor = min(width, height) / REFERENCE_SIZE
    for _ in range(int(rng.integers(1, MAX_OCCLUDERS + 1))):
        occluder = bank.occluders[int(rng.integers(len(bank)))]
        factor = float(rng.uniform(*SCALE_RANGE)) * size_factor
        center = rng.uniform([0.0, 0.0], [float(width), float(height)])
        paste_over(_resize_by_factor(occluder, factor), result, center)
    return result

"""Which release files each dataset has, and the user's links to them.

The datasets and base data are licensed, so the project ships no links: the catalog names
the files of each official release (by their path under the dataset root) and the user
fills in where to get them, in a TOML file such as

    [3dpw]
    "imageFiles.zip" = { url = "https://…/imageFiles.zip", sha256 = "…" }
    "sequenceFiles.zip" = "file:///mnt/licensed/3dpw/sequenceFiles.zip"

`template()` writes such a file with every known name and empty links.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

from pipeline.download import fetch_and_extract, is_archive
from storage.errors import FormatError, MissingFileError


@dataclass(frozen=True)
class Entry:
    """One file (or numbered family of files, `*` in a path part) of a dataset's release."""

    path: str
    """Where the file lands under the dataset root; archives unpack into its folder."""
    required: bool = False
    """Must be given whenever any link of the dataset is given."""


@dataclass(frozen=True)
class Source:
    """One file to fetch: its catalog path under the dataset root and the user's link."""

    dataset: str
    path: str
    url: str
    sha256: str | None = None

    @property
    def extract(self) -> bool:
        return is_archive(self.path)

    def dest_dir(self, root: Path) -> Path:
        return Path(root) / PurePosixPath(self.path).parent


_H36M_RAW = ("D2_Positions", "D3_Positions", "D3_Positions_mono", "D3_Positions_mono_universal")
_H36M_MOON = ("camera", "joint_3d", "data", "smpl_param")

CATALOG: dict[str, tuple[Entry, ...]] = {
    "3dpw": (Entry("imageFiles.zip", required=True), Entry("sequenceFiles.zip", required=True)),
    "mpii3d": (
        Entry("S*/Seq*/annot.mat"),
        Entry("S*/Seq*/camera.calibration"),
        Entry("S*/Seq*/imageSequence/vnect_cameras.zip"),
        Entry("S*/Seq*/imageSequence/other_angled_cameras.zip"),
        Entry("S*/Seq*/imageSequence/ceiling_cameras.zip"),
        Entry("mpi_inf_3dhp_test_set.zip"),
    ),
    "h36m": (
        *(Entry(f"Poses_{kind}_S*.tgz") for kind in _H36M_RAW),
        Entry("Videos_S*.tgz"),
        Entry("metadata.xml"),
        *(Entry(f"annotations/Human36M_subject*_{kind}.json") for kind in _H36M_MOON),
    ),
    "insta": (
        Entry("train/insta_variety_*.tfrecord"),
        Entry("test/insta_variety_*.tfrecord"),
    ),
    "pennaction": (Entry("Penn_Action.tar.gz", required=True),),
    "posetrack": (
        Entry("posetrack_data/annotations/*/*.json"),
        Entry("*.tar.gz"),
        Entry("*.tar"),
        Entry("*.zip"),
    ),
    "base_data": (
        Entry("base_data.zip"),
        Entry("SMPL_NEUTRAL.pkl"),
        Entry("SMPL_MALE.pkl"),
        Entry("SMPL_FEMALE.pkl"),
        Entry("spin_model_checkpoint.pth.tar"),
        Entry("smpl_mean_params.npz"),
        Entry("J_regressor_extra.npy"),
        Entry("J_regressor_h36m.npy"),
        Entry("tcmr_*.pth.tar"),
    ),
    "preprocessed": (Entry("*_db.pt"), Entry("insta_train_db.h5")),
}


def _matches(path: str, pattern: str) -> bool:
    """Part-by-part glob match, so `*` never crosses a `/`."""
    parts, wanted = PurePosixPath(path).parts, PurePosixPath(pattern).parts
    return len(parts) == len(wanted) and all(map(fnmatchcase, parts, wanted))


def entry_for(dataset: str, path: str) -> Entry:
    """The catalog entry a file path belongs to, or `FormatError` naming the known paths."""
    entries = _entries(dataset)
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or ".." in pure.parts or "\\" in path:
        raise FormatError(f"{dataset}: {path!r} is not a relative path under the dataset root")
    for entry in entries:
        if _matches(path, entry.path):
            return entry
    known = ", ".join(e.path for e in entries)
    raise FormatError(f"{dataset}: {path!r} is not a file of its release (known: {known})")


def _entries(dataset: str) -> tuple[Entry, ...]:
    if dataset not in CATALOG:
        raise FormatError(f"unknown dataset {dataset!r} (known: {', '.join(CATALOG)})")
    return CATALOG[dataset]


def resolve_sources(
    dataset: str, urls: Mapping[str, str | Mapping[str, str]] | None
) -> list[Source]:
    """The files to fetch for `dataset` from the user's links (`{path: url or {url, sha256}}`).

    No links (None, empty, or only empty strings) means the dataset is given by its root
    instead. Otherwise every path must belong to the catalog and every required file
    must have a link; errors name the dataset and the path.
    """
    _entries(dataset)
    sources = []
    for path, value in sorted((urls or {}).items()):
        url, sha256 = _link(dataset, path, value)
        entry_for(dataset, path)
        if url:
            sources.append(Source(dataset=dataset, path=path, url=url, sha256=sha256))
    if not sources:
        return []
    given = {s.path for s in sources}
    missing = [e.path for e in CATALOG[dataset] if e.required and e.path not in given]
    if missing:
        raise FormatError(f"{dataset}: links given but none for {', '.join(missing)}")
    return sources


def _link(dataset: str, path: str, value: object) -> tuple[str, str | None]:
    if isinstance(value, str):
        return value.strip(), None
    if isinstance(value, Mapping):
        unknown = set(value) - {"url", "sha256"}
        url, sha256 = value.get("url", ""), value.get("sha256")
        if unknown or not isinstance(url, str) or not isinstance(sha256, str | None):
            raise FormatError(
                f"{dataset}: {path!r} must be a URL string or a table with string fields "
                f"`url` and optional `sha256` (got {dict(value)!r})"
            )
        return url.strip(), (sha256.strip() or None) if sha256 else None
    raise FormatError(f"{dataset}: {path!r} must be a URL string or a table with `url`")


def load_urls(path: Path) -> dict[str, dict[str, str | Mapping[str, str]]]:
    """Read a links file: one TOML table per dataset, `path = url` or `path = {url, sha256}`."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(
            f"{path}: links file not found (`tcmr download-template` prints one)"
        )
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise FormatError(f"{path}: not valid TOML ({error})") from None
    for dataset, links in data.items():
        if not isinstance(links, dict):
            raise FormatError(f"{path}: `{dataset}` must be a table of file links")
        try:
            resolve_sources(dataset, links)
        except FormatError as error:
            raise FormatError(f"{path}: {error}") from None
    return data


def template() -> str:
    """A links file listing every known file with an empty link, for the user to fill in."""
    lines = [
        "# Links to the licensed release files, one table per dataset.",
        '# Each value is "url" or { url = "...", sha256 = "..." }; http, https and file URLs.',
        "# Paths with * stand for numbered families: write one line per real file.",
    ]
    for dataset, entries in CATALOG.items():
        lines += ["", f"[{dataset}]"]
        for entry in entries:
            prefix = "# " if "*" in entry.path else ""
            required = "  # required" if entry.required else ""
            lines.append(f'{prefix}"{entry.path}" = {{ url = "", sha256 = "" }}{required}')
    return "\n".join(lines) + "\n"


def fetch_sources(sources: Sequence[Source], root: Path, *, progress: bool = True) -> list[Path]:
    """Fetch every source under `root` (unpacking archives in place); return the files."""
    files: list[Path] = []
    for source in sources:
        files += fetch_and_extract(
            source.url,
            source.dest_dir(root),
            source.sha256,
            name=PurePosixPath(source.path).name,
            progress=progress,
        )
    return files

"""The release catalog: user links resolved to sources and fetched into the real layouts."""

from __future__ import annotations

import hashlib
import io
import tomllib
import zipfile
from pathlib import Path

import pytest

from pipeline.catalog import CATALOG, entry_for, fetch_sources, load_urls, resolve_sources, template
from storage.errors import FormatError, MissingFileError


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def test_3dpw_needs_both_archives() -> None:
    urls = {
        "sequenceFiles.zip": {"url": "https://host/s.zip", "sha256": "A" * 64},
        "imageFiles.zip": "https://host/i.zip",
    }
    sources = resolve_sources("3dpw", urls)

    assert [(s.path, s.url, s.sha256, s.extract) for s in sources] == [
        ("imageFiles.zip", "https://host/i.zip", None, True),
        ("sequenceFiles.zip", "https://host/s.zip", "A" * 64, True),
    ]
    assert sources[0].dest_dir(Path("/data/3dpw")) == Path("/data/3dpw")
    with pytest.raises(FormatError, match=r"3dpw: links given but none for sequenceFiles\.zip"):
        resolve_sources("3dpw", {"imageFiles.zip": "https://host/i.zip"})


def test_no_links_means_the_dataset_is_given_by_its_root() -> None:
    assert resolve_sources("3dpw", None) == []
    assert resolve_sources("3dpw", {}) == []
    assert resolve_sources("3dpw", {"imageFiles.zip": {"url": "", "sha256": ""}}) == []


def test_numbered_families_match_part_by_part() -> None:
    (source,) = resolve_sources("mpii3d", {"S1/Seq2/imageSequence/vnect_cameras.zip": "file:///x"})
    assert source.dest_dir(Path("/d")) == Path("/d/S1/Seq2/imageSequence")
    assert entry_for("insta", "train/insta_variety_00_copy00_hmr_noS5.ckpt-642561.tfrecord")
    assert (
        entry_for("h36m", "Poses_D3_Positions_mono_S9.tgz").path == "Poses_D3_Positions_mono_S*.tgz"
    )
    with pytest.raises(FormatError, match=r"'S1/annot\.mat' is not a file of its release"):
        entry_for("mpii3d", "S1/annot.mat")
    with pytest.raises(FormatError, match=r"not a file of its release"):
        entry_for("insta", "train/sub/insta_variety_00.tfrecord")


@pytest.mark.parametrize("path", ["../imageFiles.zip", "/imageFiles.zip", "a\\..\\b.zip", ""])
def test_paths_outside_the_root_are_refused(path: str) -> None:
    with pytest.raises(FormatError, match=r"not a relative path"):
        resolve_sources("posetrack", {path: "https://host/x.zip"})


def test_unknown_names_and_bad_values_name_the_field() -> None:
    with pytest.raises(FormatError, match=r"unknown dataset 'surreal'.*3dpw"):
        resolve_sources("surreal", {"a.zip": "https://host/a.zip"})
    with pytest.raises(FormatError, match=r"'imagefiles\.zip'.*known: imageFiles\.zip"):
        resolve_sources("3dpw", {"imagefiles.zip": "https://host/a.zip"})
    with pytest.raises(FormatError, match=r"'Penn_Action\.tar\.gz' must be a URL string"):
        resolve_sources("pennaction", {"Penn_Action.tar.gz": {"link": "https://host/p.tgz"}})


def test_links_file_round_trip(tmp_path: Path) -> None:
    links = tmp_path / "sources.toml"
    links.write_text(
        "[3dpw]\n"
        '"imageFiles.zip" = "https://host/imageFiles.zip"\n'
        '"sequenceFiles.zip" = { url = "https://host/seq.zip", sha256 = "' + "b" * 64 + '" }\n'
        "[pennaction]\n"
        '"Penn_Action.tar.gz" = ""\n'
    )
    urls = load_urls(links)

    assert [s.url for s in resolve_sources("3dpw", urls["3dpw"])] == [
        "https://host/imageFiles.zip",
        "https://host/seq.zip",
    ]
    assert resolve_sources("pennaction", urls["pennaction"]) == []


def test_bad_links_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match=r"absent\.toml"):
        load_urls(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[3dpw\n")
    with pytest.raises(FormatError, match=r"broken\.toml: not valid TOML"):
        load_urls(broken)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('[3dpw]\n"imageFiles.zip" = 3\n')
    with pytest.raises(FormatError, match=r"wrong\.toml: 3dpw: 'imageFiles\.zip' must be a URL"):
        load_urls(wrong)
    flat = tmp_path / "flat.toml"
    flat.write_text('3dpw = "https://host/all.zip"\n')
    with pytest.raises(FormatError, match=r"flat\.toml: `3dpw` must be a table"):
        load_urls(flat)


def test_template_lists_every_release_file_and_loads_empty(tmp_path: Path) -> None:
    text = template()
    parsed = tomllib.loads(text)
    assert set(parsed) == set(CATALOG)
    for dataset, entries in CATALOG.items():
        fixed = {e.path for e in entries if "*" not in e.path}
        assert set(parsed[dataset]) == fixed
        assert all(e.path in text for e in entries)
    (tmp_path / "sources.toml").write_text(text)
    urls = load_urls(tmp_path / "sources.toml")
    assert all(resolve_sources(dataset, links) == [] for dataset, links in urls.items())


def test_fetch_sources_builds_the_release_layout(tmp_path: Path) -> None:
    releases = tmp_path / "licensed"
    releases.mkdir()
    images = zip_bytes({"imageFiles/courtyard_fake_00/image_00000.jpg": b"\xff\xd8\xff\xd9"})
    sequences = zip_bytes({"sequenceFiles/test/courtyard_fake_00.pkl": b"\x80\x02}."})
    (releases / "i.zip").write_bytes(images)
    (releases / "s.zip").write_bytes(sequences)
    (releases / "annot.mat").write_bytes(b"MATLAB 5.0 MAT-file")
    urls = {
        "imageFiles.zip": {
            "url": (releases / "i.zip").as_uri(),
            "sha256": hashlib.sha256(images).hexdigest(),
        },
        "sequenceFiles.zip": (releases / "s.zip").as_uri(),
    }

    root = tmp_path / "3dpw"
    files = fetch_sources(resolve_sources("3dpw", urls), root, progress=False)
    mpi = fetch_sources(
        resolve_sources("mpii3d", {"S1/Seq1/annot.mat": (releases / "annot.mat").as_uri()}),
        tmp_path / "mpi",
        progress=False,
    )

    assert files == [
        root / "imageFiles/courtyard_fake_00/image_00000.jpg",
        root / "sequenceFiles/test/courtyard_fake_00.pkl",
    ]
    assert (root / "imageFiles.zip").exists() and (root / "sequenceFiles.zip.sha256").exists()
    assert mpi == [tmp_path / "mpi/S1/Seq1/annot.mat"]
    assert mpi[0].read_bytes() == b"MATLAB 5.0 MAT-file"

"""Downloads against a real HTTP server on loopback, and safe extraction of real archives."""

from __future__ import annotations

import hashlib
import io
import re
import socket
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipeline.download import DownloadError, extract_archive, fetch, fetch_and_extract
from storage.errors import FormatError, MissingFileError


@dataclass
class Served:
    """What the test server serves and what it saw."""

    files: dict[str, bytes] = field(default_factory=dict)
    drop_once: dict[str, int] = field(default_factory=dict)
    """Path -> bytes sent before the connection is cut, on the next request only."""
    ignore_range: set[str] = field(default_factory=set)
    fail_once: dict[str, int] = field(default_factory=dict)
    """Path -> HTTP error status answered on the next request only."""
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    base: str = ""

    def url(self, path: str) -> str:
        return f"{self.base}/{path}"

    def ranges(self, path: str) -> list[str | None]:
        return [rng for p, rng in self.requests if p == f"/{path}"]


def _handler(served: Served) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.requests.append((self.path, self.headers.get("Range")))
            body = served.files.get(self.path.lstrip("/"))
            status = served.fail_once.pop(self.path.lstrip("/"), None)
            if status is not None:
                self.send_error(status)
                return
            if body is None:
                self.send_error(404)
                return
            start = 0
            match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
            if match and self.path.lstrip("/") not in served.ignore_range:
                start = int(match.group(1))
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            cut = served.drop_once.pop(self.path.lstrip("/"), None)
            self.wfile.write(body[start:cut] if cut is not None else body[start:])
            self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:
            """Keep the test output quiet."""

    return Handler


@pytest.fixture
def server() -> Iterator[Served]:
    served = Served()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(served))
    served.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return buffer.getvalue()


def make_tar(entries: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tar.addfile(entry)
            else:
                info = tarfile.TarInfo(entry[0])
                info.size = len(entry[1])
                tar.addfile(info, io.BytesIO(entry[1]))
    return buffer.getvalue()


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# A 3DPW-like archive large enough (3 MiB) to be read in several blocks.
SEQ = b"\x80\x02}q\x00." + bytes(range(256)) * 12_288
IMAGE_ZIP = make_zip(
    {
        "sequenceFiles/train/courtyard_fake_00.pkl": SEQ,
        "imageFiles/courtyard_fake_00/image_00000.jpg": b"\xff\xd8jpeg\xff\xd9",
    }
)


def test_download_verifies_marks_and_extracts(server: Served, tmp_path: Path) -> None:
    server.files["data/3dpw.zip"] = IMAGE_ZIP
    path = fetch(server.url("data/3dpw.zip"), tmp_path / "dl", sha(IMAGE_ZIP), progress=True)

    assert path == tmp_path / "dl" / "3dpw.zip"
    assert path.read_bytes() == IMAGE_ZIP
    assert sha(IMAGE_ZIP) in (tmp_path / "dl" / "3dpw.zip.sha256").read_text()
    assert not (tmp_path / "dl" / "3dpw.zip.part").exists()

    files = extract_archive(path, tmp_path / "3dpw")
    assert files == [
        tmp_path / "3dpw/imageFiles/courtyard_fake_00/image_00000.jpg",
        tmp_path / "3dpw/sequenceFiles/train/courtyard_fake_00.pkl",
    ]
    assert files[1].read_bytes() == SEQ
    assert not [p for p in tmp_path.iterdir() if ".extract-" in p.name]


def test_rerun_skips_a_verified_download(server: Served, tmp_path: Path) -> None:
    server.files["a.zip"] = IMAGE_ZIP
    first = fetch(server.url("a.zip"), tmp_path, sha(IMAGE_ZIP), progress=False)
    second = fetch(server.url("a.zip"), tmp_path, sha(IMAGE_ZIP), progress=False)
    third = fetch(server.url("a.zip"), tmp_path, progress=False)

    assert first == second == third
    assert len(server.requests) == 1


def test_a_hand_placed_file_with_the_right_digest_is_adopted(
    server: Served, tmp_path: Path
) -> None:
    (tmp_path / "a.zip").write_bytes(IMAGE_ZIP)
    fetch(server.url("a.zip"), tmp_path, sha(IMAGE_ZIP), progress=False)

    assert server.requests == []
    assert (tmp_path / "a.zip.sha256").exists()


def test_an_interrupted_transfer_resumes_with_range(server: Served, tmp_path: Path) -> None:
    half = len(IMAGE_ZIP) // 2
    server.files["a.zip"] = IMAGE_ZIP
    server.drop_once["a.zip"] = half

    path = fetch(server.url("a.zip"), tmp_path, sha(IMAGE_ZIP), progress=False)

    assert server.ranges("a.zip") == [None, f"bytes={half}-"]
    assert path.read_bytes() == IMAGE_ZIP


def test_a_killed_run_keeps_the_part_and_the_rerun_resumes(server: Served, tmp_path: Path) -> None:
    third = len(IMAGE_ZIP) // 3
    server.files["a.zip"] = IMAGE_ZIP
    server.drop_once["a.zip"] = third

    with pytest.raises(DownloadError, match=r"a\.zip.*interrupted.*run again to resume"):
        fetch(server.url("a.zip"), tmp_path, sha(IMAGE_ZIP), progress=False, attempts=1)
    assert (tmp_path / "a.zip.part").stat().st_size == third
    assert not (tmp_path / "a.zip").exists()

    path = fetch(server.url("a.zip"), tmp_path, sha(IMAGE_ZIP), progress=False)
    assert server.ranges("a.zip") == [None, f"bytes={third}-"]
    assert sha(path.read_bytes()) == sha(IMAGE_ZIP)


def test_a_server_ignoring_range_restarts_the_transfer(server: Served, tmp_path: Path) -> None:
    server.files["a.zip"] = IMAGE_ZIP
    server.drop_once["a.zip"] = 1000
    server.ignore_range.add("a.zip")

    path = fetch(server.url("a.zip"), tmp_path, sha(IMAGE_ZIP), progress=False)

    assert server.ranges("a.zip") == [None, "bytes=1000-"]
    assert path.read_bytes() == IMAGE_ZIP


def test_a_wrong_checksum_fails_and_leaves_nothing(server: Served, tmp_path: Path) -> None:
    server.files["a.zip"] = IMAGE_ZIP
    wrong = "0" * 64

    with pytest.raises(FormatError) as caught:
        fetch(server.url("a.zip"), tmp_path / "dl", wrong, progress=False)

    message = str(caught.value)
    assert server.url("a.zip") in message and wrong in message and sha(IMAGE_ZIP) in message
    assert leftovers(tmp_path / "dl") == []


def test_a_bad_checksum_does_not_touch_an_earlier_verified_copy(
    server: Served, tmp_path: Path
) -> None:
    server.files["a.zip"] = IMAGE_ZIP
    fetch(server.url("a.zip"), tmp_path, sha(IMAGE_ZIP), progress=False)

    with pytest.raises(FormatError, match="sha256 mismatch"):
        fetch(server.url("a.zip"), tmp_path, "1" * 64, progress=False)

    assert (tmp_path / "a.zip").read_bytes() == IMAGE_ZIP
    assert leftovers(tmp_path) == ["a.zip", "a.zip.sha256"]


def test_file_urls(tmp_path: Path) -> None:
    source = tmp_path / "src" / "Penn_Action.tar.gz"
    source.parent.mkdir()
    data = make_tar([("Penn_Action/labels/0001.mat", b"MATLAB 5.0 MAT-file")])
    source.write_bytes(data)

    path = fetch(source.as_uri(), tmp_path / "dl", sha(data), progress=False)
    assert path.read_bytes() == data
    assert extract_archive(path, tmp_path / "penn") == [
        tmp_path / "penn/Penn_Action/labels/0001.mat"
    ]

    with pytest.raises(MissingFileError, match=r"missing\.zip"):
        fetch((tmp_path / "missing.zip").as_uri(), tmp_path / "dl", progress=False)


def test_unreachable_and_missing_urls_name_the_url(server: Served, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/imageFiles.zip"
    with pytest.raises(DownloadError, match=re.escape(url) + ".*cannot be reached"):
        fetch(url, tmp_path, progress=False, attempts=1)

    with pytest.raises(MissingFileError, match=re.escape(server.url("nope.zip")) + ".*404"):
        fetch(server.url("nope.zip"), tmp_path, progress=False)
    with pytest.raises(FormatError, match="ftp"):
        fetch("ftp://example.org/a.zip", tmp_path, progress=False)
    with pytest.raises(FormatError, match="64 hexadecimal"):
        fetch(server.url("a.zip"), tmp_path, "abc", progress=False)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("archive", "entry"),
    [
        ("evil.zip", "../outside.txt"),
        ("evil.zip", "/abs/outside.txt"),
        ("evil.tar.gz", "data/../../outside.txt"),
        ("evil.tgz", "/abs/outside.txt"),
    ],
)
def test_unsafe_paths_are_refused_and_nothing_is_extracted(
    tmp_path: Path, archive: str, entry: str
) -> None:
    good = ("imageFiles/ok.jpg", b"ok")
    data = (
        make_zip(dict([good, (entry, b"x")]))
        if archive.endswith(".zip")
        else make_tar([good, (entry, b"x")])
    )
    path = tmp_path / archive
    path.write_bytes(data)

    with pytest.raises(FormatError) as caught:
        extract_archive(path, tmp_path / "root" / "target")

    assert str(path) in str(caught.value) and entry in str(caught.value)
    assert leftovers(tmp_path / "root") == ["target"]


@pytest.mark.parametrize(
    ("entry", "kind"),
    [
        (link("imageFiles/escape", "../../../etc/passwd"), "symlink"),
        (link("escape", "/etc/passwd"), "symlink"),
        (link("hard", "../outside.txt", tarfile.LNKTYPE), "hard link"),
    ],
)
def test_links_leaving_the_target_are_refused(
    tmp_path: Path, entry: tarfile.TarInfo, kind: str
) -> None:
    path = tmp_path / "links.tar"
    path.write_bytes(make_tar([("imageFiles/ok.jpg", b"ok"), entry], mode="w"))

    with pytest.raises(FormatError, match=f"{kind} '{entry.name}'"):
        extract_archive(path, tmp_path / "target")

    assert leftovers(tmp_path / "target") == []


def test_links_inside_the_target_are_kept_and_folders_merge(tmp_path: Path) -> None:
    target = tmp_path / "3dpw"
    (target / "imageFiles").mkdir(parents=True)
    (target / "imageFiles" / "mine.txt").write_text("kept")
    path = tmp_path / "links.tar"
    entries = [("imageFiles/seq/image_00000.jpg", b"jpg"), link("imageFiles/latest", "seq")]
    path.write_bytes(make_tar(entries, mode="w"))

    files = extract_archive(path, target)

    assert files == [target / "imageFiles/latest", target / "imageFiles/seq/image_00000.jpg"]
    assert (target / "imageFiles/latest/image_00000.jpg").read_bytes() == b"jpg"
    assert (target / "imageFiles/mine.txt").read_text() == "kept"


def test_corrupt_and_unknown_archives_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "imageFiles.zip"
    bad.write_bytes(IMAGE_ZIP[: len(IMAGE_ZIP) // 2])
    with pytest.raises(FormatError, match=r"imageFiles\.zip.*zip"):
        extract_archive(bad, tmp_path / "out")
    other = tmp_path / "notes.rar"
    other.write_bytes(b"Rar!")
    with pytest.raises(FormatError, match=r"notes\.rar"):
        extract_archive(other, tmp_path / "out")
    assert leftovers(tmp_path / "out") == []


def test_fetch_and_extract_unpacks_once(server: Served, tmp_path: Path) -> None:
    server.files["3dpw.zip"] = IMAGE_ZIP
    first = fetch_and_extract(server.url("3dpw.zip"), tmp_path, sha(IMAGE_ZIP), progress=False)
    pkl = tmp_path / "sequenceFiles/train/courtyard_fake_00.pkl"
    assert pkl in first and pkl.read_bytes() == SEQ
    pkl.write_bytes(b"edited after extraction")

    second = fetch_and_extract(server.url("3dpw.zip"), tmp_path, sha(IMAGE_ZIP), progress=False)

    assert second == first
    assert pkl.read_bytes() == b"edited after extraction"
    assert len(server.requests) == 1
    pkl.unlink()
    fetch_and_extract(server.url("3dpw.zip"), tmp_path, sha(IMAGE_ZIP), progress=False)
    assert pkl.read_bytes() == SEQ


def test_fetch_and_extract_passes_plain_files_through(server: Served, tmp_path: Path) -> None:
    server.files["J_regressor_h36m.npy"] = b"\x93NUMPY"
    files = fetch_and_extract(server.url("J_regressor_h36m.npy"), tmp_path, progress=False)
    assert files == [tmp_path / "J_regressor_h36m.npy"]


def test_a_server_error_is_retried_then_reported(server: Served, tmp_path: Path) -> None:
    server.files["a.zip"] = IMAGE_ZIP
    server.fail_once["a.zip"] = 503
    assert fetch(server.url("a.zip"), tmp_path, progress=False).read_bytes() == IMAGE_ZIP
    assert len(server.ranges("a.zip")) == 2

    server.fail_once["b.zip"] = 500
    with pytest.raises(DownloadError, match=re.escape(server.url("b.zip")) + ".*500"):
        fetch(server.url("b.zip"), tmp_path, progress=False, attempts=1)


def test_a_part_left_by_another_link_is_not_resumed(server: Served, tmp_path: Path) -> None:
    server.files["a.zip"] = IMAGE_ZIP
    (tmp_path / "a.zip.part").write_bytes(b"bytes from an older mirror")
    (tmp_path / "a.zip.part.url").write_text("https://old-mirror/a.zip")

    path = fetch(server.url("a.zip"), tmp_path, progress=False)

    assert server.ranges("a.zip") == [None]
    assert path.read_bytes() == IMAGE_ZIP
    assert leftovers(tmp_path) == ["a.zip", "a.zip.sha256"]

"""Fetch dataset archives from http(s)/file URLs, resumably and verified, and unpack them safely.

Licensed datasets are large and their links flaky: a transfer streams into `<name>.part`,
resumes with an HTTP `Range` request after an interruption, is checked against its sha256
and only then renamed to its final name next to a `<name>.sha256` marker, so a re-run
skips it without touching the network. Archives are checked entry by entry before anything
is written (absolute paths, `..` and links leaving the target are refused) and unpacked
into a temporary folder that is moved into place only when complete.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from tqdm import tqdm

from storage.errors import FormatError, MissingFileError, TcmrError
from storage.files import write_atomic
from storage.hashing import file_sha256

CHUNK = 1 << 20
MARKER_SUFFIX = ".sha256"
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


class DownloadError(TcmrError):
    """A URL could not be reached or its transfer did not complete; the message names the URL."""


@dataclass(frozen=True)
class _Marker:
    """What the `<name>.sha256` file records about a verified download."""

    url: str
    sha256: str
    size: int

    @classmethod
    def read(cls, path: Path) -> _Marker | None:
        try:
            data = json.loads(path.read_text())
            return cls(url=str(data["url"]), sha256=str(data["sha256"]), size=int(data["size"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, path: Path) -> None:
        payload = {"url": self.url, "sha256": self.sha256, "size": self.size}
        write_atomic(path, lambda tmp: tmp.write_text(json.dumps(payload, indent=1) + "\n"))


def file_name_of(url: str) -> str:
    """The last path segment of a URL, the default name a download is saved under."""
    name = unquote(PurePosixPath(urlsplit(url).path).name)
    if not name or name in {".", ".."}:
        raise FormatError(f"{url}: the URL names no file; give the file name explicitly")
    return name


def fetch(
    url: str,
    dest_dir: Path,
    sha256: str | None = None,
    *,
    name: str | None = None,
    progress: bool = True,
    attempts: int = 3,
    timeout: float = 30.0,
) -> Path:
    """Download `url` into `dest_dir` (as `name`, default the URL's file name) and return its path.

    Skips the transfer when a verified copy is already there. An interrupted transfer
    resumes from its `.part` file, here (up to `attempts` connections) or on a re-run.
    A sha256 mismatch raises `FormatError` naming the URL and both digests and leaves no
    file under the final name.
    """
    expected = sha256.lower() if sha256 else None
    if expected is not None and not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise FormatError(f"{url}: sha256 {sha256!r} is not 64 hexadecimal digits")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / (name or file_name_of(url))
    marker_path = final.with_name(final.name + MARKER_SUFFIX)
    if _already_verified(final, marker_path, url, expected):
        return final

    scheme = urlsplit(url).scheme.lower()
    if scheme not in {"file", "http", "https"}:
        raise FormatError(f"{url}: unsupported URL scheme {scheme!r} (use http, https or file)")
    part = final.with_name(final.name + ".part")
    origin = final.with_name(final.name + ".part.url")
    if part.exists() and (not origin.is_file() or origin.read_text() != url):
        part.unlink()  # bytes of another link: never resume from them
    origin.write_text(url)
    try:
        if scheme == "file":
            _copy_local(url, part, progress)
        else:
            _download_http(url, part, progress=progress, attempts=attempts, timeout=timeout)
    except TcmrError:
        if not part.exists():
            origin.unlink()
        raise

    actual = file_sha256(part)
    if expected is not None and actual != expected:
        part.unlink()
        origin.unlink()
        raise FormatError(
            f"{url}: sha256 mismatch: expected {expected}, got {actual}; the download was discarded"
        )
    size = part.stat().st_size
    os.replace(part, final)
    origin.unlink()
    _Marker(url=url, sha256=actual, size=size).write(marker_path)
    return final


def _already_verified(final: Path, marker_path: Path, url: str, expected: str | None) -> bool:
    """True when `final` is a verified copy of what is asked for (adopting a hand-placed file)."""
    if not final.is_file():
        return False
    marker = _Marker.read(marker_path)
    if marker is not None and marker.size == final.stat().st_size:
        if expected is not None:
            return marker.sha256 == expected
        return marker.url == url
    if expected is not None and file_sha256(final) == expected:
        _Marker(url=url, sha256=expected, size=final.stat().st_size).write(marker_path)
        return True
    return False


def _copy_local(url: str, part: Path, progress: bool) -> None:
    source = Path(urllib.request.url2pathname(urlsplit(url).path))
    if not source.is_file():
        raise MissingFileError(f"{url}: no such file {source}")
    with (
        source.open("rb") as src,
        part.open("wb") as dst,
        _bar(part.name, source.stat().st_size, 0, progress) as bar,
    ):
        for block in iter(lambda: src.read(CHUNK), b""):
            dst.write(block)
            bar.update(len(block))


def _download_http(url: str, part: Path, *, progress: bool, attempts: int, timeout: float) -> None:
    """Stream `url` into `part`, resuming with `Range` until complete or attempts run out."""
    for attempt in range(1, attempts + 1):
        done = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"User-Agent": "tcmr-pipeline"})
        if done:
            request.add_header("Range", f"bytes={done}-")
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as error:
            if error.code == 416 and done:
                if _range_total(error.headers.get("Content-Range")) == done:
                    return
                part.unlink()
                continue
            if error.code == 404:
                raise MissingFileError(f"{url}: the server answered 404 Not Found") from None
            if error.code >= 500 and attempt < attempts:
                continue
            raise DownloadError(f"{url}: the server answered {error.code} {error.reason}") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            if attempt == attempts:
                raise DownloadError(f"{url}: cannot be reached ({reason})") from None
            continue
        with response:
            resumed = response.status == 206
            if resumed and _range_start(response.headers.get("Content-Range")) != done:
                raise DownloadError(
                    f"{url}: the server resumed at the wrong offset "
                    f"(Content-Range {response.headers.get('Content-Range')!r}, have {done} bytes)"
                )
            start = done if resumed else 0
            length = response.headers.get("Content-Length")
            total = start + int(length) if length is not None else None
            received = _stream(response, part, append=resumed, total=total, progress=progress)
        if total is None or start + received >= total:
            return
    have = part.stat().st_size if part.exists() else 0
    raise DownloadError(
        f"{url}: the transfer was interrupted {attempts} times ({have} bytes kept in {part}); "
        "run again to resume"
    )


def _stream(
    response: http.client.HTTPResponse,
    part: Path,
    *,
    append: bool,
    total: int | None,
    progress: bool,
) -> int:
    """Copy the response body to `part`; return the bytes received before the stream ended."""
    start = part.stat().st_size if append else 0
    received = 0
    with part.open("ab" if append else "wb") as out, _bar(part.name, total, start, progress) as bar:
        while True:
            try:
                block = response.read(CHUNK)
            except (http.client.HTTPException, ConnectionError, TimeoutError):
                break  # a dropped connection: keep what arrived; the caller resumes with Range
            if not block:
                break
            out.write(block)
            received += len(block)
            bar.update(len(block))
    return received


def _range_start(content_range: str | None) -> int | None:
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", (content_range or "").strip())
    return int(match.group(1)) if match else None


def _range_total(content_range: str | None) -> int | None:
    match = re.fullmatch(r"bytes (?:\*|\d+-\d+)/(\d+)", (content_range or "").strip())
    return int(match.group(1)) if match else None


def _bar(name: str, total: int | None, initial: int, enabled: bool) -> tqdm:
    return tqdm(
        total=total,
        initial=initial,
        desc=name,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=not enabled,
        leave=False,
    )


def fetch_and_extract(
    url: str,
    dest_dir: Path,
    sha256: str | None = None,
    *,
    name: str | None = None,
    progress: bool = True,
) -> list[Path]:
    """Fetch `url` into `dest_dir`; unpack it there when it is an archive; return the files.

    An `<archive>.extracted` marker records the archive digest and the files it produced,
    so a re-run with the same verified archive neither downloads nor unpacks again.
    """
    dest_dir = Path(dest_dir)
    path = fetch(url, dest_dir, sha256, name=name, progress=progress)
    if not is_archive(path):
        return [path]
    digest = _Marker.read(path.with_name(path.name + MARKER_SUFFIX))
    done_path = path.with_name(path.name + ".extracted")
    try:
        done = json.loads(done_path.read_text())
        files = [dest_dir / rel for rel in done["files"]]
        if (
            digest is not None
            and done["sha256"] == digest.sha256
            and all(f.exists() or f.is_symlink() for f in files)
        ):
            return files
    except (OSError, ValueError, KeyError, TypeError):
        pass
    files = extract_archive(path, dest_dir)
    record = {
        "sha256": digest.sha256 if digest else "",
        "files": [str(f.relative_to(dest_dir)) for f in files],
    }
    write_atomic(done_path, lambda tmp: tmp.write_text(json.dumps(record) + "\n"))
    return files


def is_archive(path: Path | str) -> bool:
    """True for the archive kinds `extract_archive` unpacks."""
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def extract_archive(archive: Path, target: Path) -> list[Path]:
    """Unpack a .zip / .tar / .tar.gz / .tgz archive into `target`; return the files written.

    Every entry is checked first; an absolute path, a `..` component, a link that leaves
    `target` or a device entry raises `FormatError` naming the archive and the entry, and
    nothing is written. The archive is unpacked into a temporary sibling of `target` and
    merged into it only when complete, so an interruption leaves `target` as it was.
    """
    archive, target = Path(archive), Path(target)
    if not archive.is_file():
        raise MissingFileError(f"{archive}: archive not found")
    if not is_archive(archive):
        raise FormatError(f"{archive}: not a known archive kind ({', '.join(ARCHIVE_SUFFIXES)})")
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.extract-", dir=target.parent))
    try:
        if archive.name.lower().endswith(".zip"):
            _extract_zip(archive, staging)
        else:
            _extract_tar(archive, staging)
        written = [target / path.relative_to(staging) for path in _files_under(staging)]
        _merge_into(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sorted(written)


def _checked_name(archive: Path, name: str) -> PurePosixPath:
    """The entry's relative path, or `FormatError` when it is absolute or climbs with `..`."""
    normalized = name.replace("\\", "/")
    path = PurePosixPath(normalized)
    if normalized.startswith("/") or re.match(r"^[A-Za-z]:", normalized):
        raise FormatError(f"{archive}: entry {name!r} has an absolute path; refused")
    if ".." in path.parts:
        raise FormatError(f"{archive}: entry {name!r} climbs out with '..'; refused")
    return path


def _check_link(archive: Path, name: str, entry: PurePosixPath, link: str, hard: bool) -> None:
    """Refuse a link whose target resolves outside the extraction folder."""
    kind = "hard link" if hard else "symlink"
    if link.startswith("/") or re.match(r"^[A-Za-z]:", link):
        raise FormatError(f"{archive}: {kind} {name!r} points to absolute path {link!r}; refused")
    base = () if hard else entry.parent.parts
    depth = 0
    for part in (*base, *PurePosixPath(link.replace("\\", "/")).parts):
        depth += -1 if part == ".." else 0 if part == "." else 1
        if depth < 0:
            raise FormatError(f"{archive}: {kind} {name!r} -> {link!r} leaves the target; refused")


def _extract_tar(archive: Path, staging: Path) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                entry = _checked_name(archive, member.name)
                if member.issym() or member.islnk():
                    _check_link(archive, member.name, entry, member.linkname, member.islnk())
                elif not (member.isfile() or member.isdir()):
                    raise FormatError(
                        f"{archive}: entry {member.name!r} is a device or fifo; refused"
                    )
            tar.extractall(staging, members=members, filter="data")
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise FormatError(f"{archive}: cannot be read as a tar archive ({error})") from None


def _extract_zip(archive: Path, staging: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            links: dict[str, str] = {}
            for info in infos:
                entry = _checked_name(archive, info.filename)
                if stat.S_ISLNK(info.external_attr >> 16):
                    link = zf.read(info).decode("utf-8")
                    _check_link(archive, info.filename, entry, link, hard=False)
                    links[info.filename] = link
            for info in infos:
                if info.filename in links:
                    path = staging / _checked_name(archive, info.filename)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.symlink_to(links[info.filename])
                else:
                    zf.extract(info, staging)
    except (zipfile.BadZipFile, zlib.error, UnicodeDecodeError) as error:
        raise FormatError(f"{archive}: cannot be read as a zip archive ({error})") from None


def _files_under(root: Path) -> Iterator[Path]:
    """Files and links (also links to folders, which `os.walk` lists but does not enter)."""
    for folder, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if (Path(folder) / d).is_symlink()]:
            yield Path(folder) / name


def _merge_into(source: Path, target: Path) -> None:
    """Move the contents of `source` into `target`, replacing files and merging folders."""
    for item in source.iterdir():
        dest = target / item.name
        if item.is_dir() and not item.is_symlink() and dest.is_dir() and not dest.is_symlink():
            _merge_into(item, dest)
        else:
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            os.replace(item, dest)

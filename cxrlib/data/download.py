"""Getting the real data: download each public source into the layout the readers accept.

``python -m cxrlib download --data DIR [--source cohen kermany nih]`` fetches, verifies and
unpacks; ``python -m cxrlib download --list`` prints what it would fetch and where. Downloads
stream into ``DIR/.downloads/<file>.part`` and show their bytes, rate and time left
(:class:`Progress`). An interrupted download resumes with an HTTP Range request, by itself a few
times and then on a rerun. Each file is checked against the checksum where the source
publishes one and unpacked through a temporary folder; a marker file then records the finished
step, so a rerun skips it.

Addresses (the one table, :data:`REMOTES`):

- Cohen's collection: the GitHub archive of the pinned commit the paper-era bundle uses
  (``584034aa7fbf06496741f11008d72fd791c8e443``, 2020-06-22). GitHub publishes no checksum for
  archives; the SHA-256 of what was received is recorded in the marker file.
- Kermany et al.: ``ChestXRay2017.zip`` of Mendeley Data doi:10.17632/rscbjbr9sj.2
  (CC BY 4.0); no checksum is published with the public link.
- NIH ChestX-ray14: the twelve image archives NIH shares through Box (the addresses of NIH's own
  ``batch_download_zips.py``), each checked against the MD5 list NIH publishes beside them, and
  the label table ``Data_Entry_2017_v2020.csv`` from torchxrayvision's repository at a pinned
  commit (NIH's Box page offers it only through a browser).
- ``nih_rxtorax/`` exists only in the shared bundle (a Kaggle copy); with the full NIH download
  it is not needed.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from cxrlib.core.errors import UserError

COHEN_COMMIT = "584034aa7fbf06496741f11008d72fd791c8e443"
TORCHXRAYVISION_COMMIT = "f4087a0b0d0cdc6a5877fb5456965b6d29adb1e5"


@dataclass(frozen=True)
class Remote:
    """One file to fetch and how to unpack it into ``<data>/<source>/``."""

    source: str
    url: str
    filename: str
    #: "zip", "tar.gz" or "gz" (one gzip-compressed file)
    kind: str
    md5: str | None = None
    #: folder inside a zip whose content becomes the source folder ("" = the zip's top level)
    strip: str = ""
    #: what to keep from the (stripped) archive; () = everything
    keep: tuple[str, ...] = ()
    #: for "gz": the name of the unpacked file
    out: str = ""
    size_note: str = ""


_NIH_BOX = "https://nihcc.box.com/shared/static/"
_NIH_ARCHIVES = (  # (Box file, MD5 published by NIH)
    ("vfk49d74nhbxq3nqjg0900w5nvkorp5c.gz", "fe8ed0a6961412fddcbb3603c11b3698"),
    ("i28rlmbvmfjbl8p2n3ril0pptcmcu9d1.gz", "ab07a2d7cbe6f65ddd97b4ed7bde10bf"),
    ("f1t00wrtdk94satdfb9olcolqx20z2jp.gz", "2301d03bde4c246388bad3876965d574"),
    ("0aowwzs5lhjrceb3qp67ahp0rd1l1etg.gz", "9f1b7f5aae01b13f4bc8e2c44a4b8ef6"),
    ("v5e3goj22zr6h8tzualxfsqlqaygfbsn.gz", "1861f3cd0ef7734df8104f2b0309023b"),
    ("asi7ikud9jwnkrnkj99jnpfkjdes7l6l.gz", "456b53a8b351afd92a35bc41444c58c8"),
    ("jn1b4mw4n6lnh74ovmcjb8y48h8xj07n.gz", "1075121ea20a137b87f290d6a4a5965e"),
    ("tvpxmn7qyrgl0w8wfh9kqfjskv6nmm1j.gz", "b61f34cec3aa69f295fbb593cbd9d443"),
    ("upyy3ml7qdumlgk2rfcvlb9k6gvqq2pj.gz", "442a3caa61ae9b64e61c561294d1e183"),
    ("l6nilvfa9cg3s28tqv1qc1olm3gnz54p.gz", "09ec81c4c31e32858ad8cf965c494b74"),
    ("hhq8fkdgvcari67vfhs7ppg2w6ni4jze.gz", "499aefc67207a5a97692424cf5dbeed5"),
    ("ioqwiy20ihqwyr8pf4c24eazhh281pbu.gz", "dc9fda1757c2de0032b63347a7d2895c"),
)

REMOTES: dict[str, tuple[Remote, ...]] = {
    "cohen": (Remote(
        source="cohen",
        url=f"https://github.com/ieee8023/covid-chestxray-dataset/archive/{COHEN_COMMIT}.zip",
        filename=f"covid-chestxray-dataset-{COHEN_COMMIT}.zip", kind="zip",
        strip=f"covid-chestxray-dataset-{COHEN_COMMIT}", keep=("metadata.csv", "images"),
        size_note="about 0.6 GB"),),
    "kermany": (Remote(
        source="kermany",
        url=("https://data.mendeley.com/public-files/datasets/rscbjbr9sj/files/"
             "f12eaf6d-6023-432f-acc9-80c9d7393433/file_downloaded"),
        filename="ChestXRay2017.zip", kind="zip", keep=("chest_xray",),
        size_note="about 1.2 GB"),),
    "nih": (Remote(
        source="nih",
        url=(f"https://raw.githubusercontent.com/mlmed/torchxrayvision/{TORCHXRAYVISION_COMMIT}/"
             f"torchxrayvision/data/Data_Entry_2017_v2020.csv.gz"),
        filename="Data_Entry_2017_v2020.csv.gz", kind="gz", out="Data_Entry_2017_v2020.csv",
        size_note="2 MB"),) + tuple(
        Remote(source="nih", url=_NIH_BOX + box, filename=f"images_{k:03d}.tar.gz",
               kind="tar.gz", md5=md5, keep=("images",), size_note="about 4 GB")
        for k, (box, md5) in enumerate(_NIH_ARCHIVES, start=1)),
}

_MANUAL = {
    "cohen": ("Cohen's COVID-19 image data collection: download {url} (or `git clone "
              "https://github.com/ieee8023/covid-chestxray-dataset` and check out {commit}) "
              "and put metadata.csv and images/ in {where}/"),
    "kermany": ("Kermany et al. chest X-rays: download ChestXRay2017.zip from "
                "https://data.mendeley.com/datasets/rscbjbr9sj/2 (CC BY 4.0) and unzip it so that "
                "{where}/chest_xray/train/NORMAL/ exists"),
    "nih": ("NIH ChestX-ray14: download images_001.tar.gz ... images_012.tar.gz and "
            "Data_Entry_2017_v2020.csv from https://nihcc.app.box.com/v/ChestXray-NIHCC, unpack "
            "the archives into {where}/ (they create images/) and put the CSV beside images/"),
    "nih_rxtorax": ("nih_rxtorax is optional (a Kaggle copy of NIH 'Effusion' and 'No Finding' "
                    "images, in the shared bundle); the full NIH download in nih/ replaces it"),
}


class DownloadError(UserError, RuntimeError):
    """A download failed or did not verify; the message names the file and what to do."""


def how_to_get(source: str, where: Path | str) -> str:
    """One sentence: what to download for ``source`` and where to put it."""
    remote = REMOTES.get(source, (None,))[0]
    text = _MANUAL[source].format(url=remote.url if remote else "", commit=COHEN_COMMIT,
                                  where=Path(where))
    if source in REMOTES:
        text += (f"; or run `python -m cxrlib download --data {Path(where).parent} "
                 f"--source {source}`")
    return text + "."


def missing_data_message(data_dir: Path | str, sources=None) -> str:
    """What to get, source by source, for a data folder that lacks some or all sources."""
    data_dir = Path(data_dir)
    sources = sources or [s for s in ("cohen", "kermany", "nih") if not (data_dir / s).is_dir()]
    lines = ["To curate the real data, the data folder needs these sources:"]
    lines += [f"- {s}/: {how_to_get(s, data_dir / s)}" for s in sources]
    lines.append("Without --data, `python -m cxrlib curate` builds the built-in synthetic set.")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# fetching


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def human_size(n: float) -> str:
    """Bytes as people read them: 950 B, 12.3 MB, 4.01 GB (powers of 1000)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.{2 if unit == 'GB' else 1}f} {unit}"
    return f"{n:.0f} B"


def human_duration(seconds: float) -> str:
    """45 s, 3 min 20 s, 1 h 05 min."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def progress_line(name: str, done: int, total: int | None, new_bytes: int,
                  seconds: float) -> str:
    """``images_001.tar.gz: 1.20 GB of 4.01 GB (30%), 12.3 MB/s, 3 min 48 s left``."""
    rate = new_bytes / seconds if seconds > 0 else 0.0
    text = f"{name}: {human_size(done)}"
    if total:
        text += f" of {human_size(total)} ({100 * done / total:.0f}%)"
    text += f", {human_size(rate)}/s"
    if total and done >= total:
        return text + ", done"
    if total and rate > 0:
        text += f", {human_duration((total - done) / rate)} left"
    return text


class Progress:
    """Shows how each download goes (:func:`progress_line`): on a terminal one line rewritten in
    place, in a log a line every ``every`` seconds (30 by default) and one when it is done.
    The rate counts only the bytes this run received (not those a resumed file already had)."""

    def __init__(self, stream=None, every: float | None = None, clock=time.monotonic):
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = every if every is not None else (0.5 if self.tty else 30.0)
        self.clock, self.name = clock, None

    def __call__(self, name: str, done: int, total: int | None) -> None:
        now = self.clock()
        if name != self.name:
            self.name, self.start, self.start_bytes, self.last = name, now, done, None
        finished = total is not None and done >= total
        if not finished and self.last is not None and now - self.last < self.every:
            return
        self.last = now
        line = progress_line(name, done, total, done - self.start_bytes, now - self.start)
        if self.tty:
            self.stream.write("\r" + line.ljust(79) + ("\n" if finished else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


class _Interrupted(Exception):
    """The connection broke off mid-file: what arrived is kept, and the next try resumes."""


def _total_size(response, done: int) -> int | None:
    """The whole file's size: from Content-Range (a resumed download) or Content-Length."""
    whole = response.headers.get("Content-Range", "").rpartition("/")[2]
    if whole.isdigit():
        return int(whole)
    length = response.headers.get("Content-Length", "")
    return done + int(length) if length.isdigit() else None


def _fetch_part(url: str, part: Path, name: str, timeout: float, chunk: int, progress) -> None:
    """One try: append to ``part`` from where it ends (an HTTP Range request), to the end."""
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "cxrlib-download"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            resumed = have and response.status == 206
            done = have if resumed else 0
            total = _total_size(response, done)
            if progress:
                progress(name, done, total)
            with open(part, "ab" if resumed else "wb") as out:
                while block := response.read(chunk):
                    out.write(block)
                    done += len(block)
                    if progress:
                        progress(name, done, total)
            if total is not None and done < total:
                raise _Interrupted(f"{human_size(done)} of {human_size(total)} arrived")
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the .part file is already complete
            return
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}; the address may have moved. "
                            f"Download it by hand to {part.with_suffix('')} and rerun") from None
    except (http.client.HTTPException, urllib.error.URLError, TimeoutError,
            ConnectionError) as e:
        raise _Interrupted(str(e) or type(e).__name__) from None


def fetch(url: str, dest: Path, md5: str | None = None, timeout: float = 60.0,
          chunk: int = 1 << 20, progress=None, retries: int = 3, wait: float = 2.0) -> Path:
    """Stream ``url`` to ``dest`` through ``dest.part``, resuming a partial ``.part`` file.

    A connection that breaks off is resumed where it stopped (up to ``retries`` more tries,
    ``wait`` seconds apart); after that a rerun resumes it. ``progress(name, done, total)`` is
    called as bytes arrive (:class:`Progress`). The finished file appears under its name only
    after it is complete and, when ``md5`` is given, verified; a mismatch deletes the download
    and raises :class:`DownloadError`.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file() and (md5 is None or _digest(dest, "md5") == md5):
        return dest
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _fetch_part(url, part, dest.name, timeout, chunk, progress)
            break
        except _Interrupted as e:
            if attempt == retries:
                raise DownloadError(f"{url}: interrupted ({e}) after {retries + 1} tries",
                                    f"rerun to resume: {part} keeps what arrived") from None
            time.sleep(wait)
    if md5 is not None:
        got = _digest(part, "md5")
        if got != md5:
            part.unlink()
            raise DownloadError(f"{dest.name}: MD5 {got} does not match the published {md5}; "
                                f"the partial file was deleted, rerun to download it again")
    os.replace(part, dest)
    return dest


def _safe_members(names, root: Path) -> None:
    root = root.resolve()
    for name in names:
        target = (root / name).resolve()
        if not target.is_relative_to(root):
            raise DownloadError(f"archive member {name!r} would land outside {root}; refusing it")


def _merge_into(src: Path, dst: Path) -> None:
    """Move ``src`` (file or folder) to ``dst``, merging folders that already exist."""
    if src.is_dir() and dst.is_dir():
        for child in sorted(src.iterdir()):
            _merge_into(child, dst / child.name)
        src.rmdir()
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists():
            if dst.is_dir():
                shutil.rmtree(dst)
            else:
                dst.unlink()
        os.replace(src, dst)


def unpack(archive: Path, remote: Remote, target: Path) -> None:
    """Unpack ``archive`` into ``target`` (the source folder) through a temporary folder."""
    target.mkdir(parents=True, exist_ok=True)
    tmp = target / f".unpack-{archive.name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        if remote.kind == "zip":
            with zipfile.ZipFile(archive) as z:
                _safe_members(z.namelist(), tmp)
                z.extractall(tmp)
        elif remote.kind == "tar.gz":
            with tarfile.open(archive, "r:gz") as t:
                _safe_members(t.getnames(), tmp)
                t.extractall(tmp, filter="data")
        elif remote.kind == "gz":
            with gzip.open(archive, "rb") as src, open(tmp / remote.out, "wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            raise DownloadError(f"{remote.filename}: unknown archive kind {remote.kind!r}")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, gzip.BadGzipFile, OSError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DownloadError(f"{archive}: cannot unpack ({e}); delete it and download again"
                            ) from None
    base = tmp / remote.strip if remote.strip else tmp
    if not base.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
        raise DownloadError(f"{archive}: expected a top folder {remote.strip!r} inside it")
    wanted = remote.keep or tuple(p.name for p in base.iterdir())
    missing = [name for name in wanted if not (base / name).exists()]
    if missing:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DownloadError(f"{archive}: {missing} not found inside; is this the right file?")
    for name in wanted:
        _merge_into(base / name, target / name)
    shutil.rmtree(tmp, ignore_errors=True)


def _marker(target: Path, remote: Remote) -> Path:
    return target / ".cxrlib-download" / f"{remote.filename}.done"


def download_source(source: str, data_dir, base_url: str | None = None,
                    parts: list[int] | None = None, keep_archives: bool = False,
                    timeout: float = 60.0, remotes: tuple[Remote, ...] | None = None,
                    log=print, progress=None) -> list[Path]:
    """Fetch, verify and unpack every remote of ``source`` into ``data_dir/source``.

    ``base_url``: fetch ``<base_url>/<filename>`` instead of the public address (a mirror, or the
    tests' loopback server); also read from ``CXRLIB_DOWNLOAD_BASE``. ``parts``: for NIH, which
    image archives (1-12) to fetch (the label table is always fetched). Steps already done
    (marker file present) are skipped. ``remotes`` replaces the table's entries (tests).
    ``progress``: shows each archive's bytes, rate and time left (default: :class:`Progress`
    on stderr).
    """
    progress = Progress() if progress is None else progress
    if remotes is None and source not in REMOTES:
        raise UserError(f"no download for {source!r}; downloadable: {', '.join(REMOTES)}. "
                         f"{_MANUAL.get(source, '')}")
    base_url = base_url or os.environ.get("CXRLIB_DOWNLOAD_BASE") or None
    data_dir = Path(data_dir)
    target = data_dir / source
    done = []
    for k, remote in enumerate(remotes if remotes is not None else REMOTES[source]):
        if parts and remote.kind == "tar.gz" and k not in parts:
            continue
        marker = _marker(target, remote)
        if marker.is_file():
            log(f"{source}: {remote.filename} already unpacked ({marker}); skipped")
            done.append(marker)
            continue
        url = f"{base_url.rstrip('/')}/{remote.filename}" if base_url else remote.url
        log(f"{source}: fetching {url} ({remote.size_note or 'size unknown'})")
        archive = fetch(url, data_dir / ".downloads" / remote.filename, md5=remote.md5,
                        timeout=timeout, progress=progress)
        sha256 = _digest(archive, "sha256")
        unpack(archive, remote, target)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"url={url}\nsha256={sha256}\nmd5_published={remote.md5 or ''}\n")
        if not keep_archives:
            archive.unlink()
        done.append(marker)
        check = "MD5 verified" if remote.md5 else "no published checksum; SHA-256 recorded"
        log(f"{source}: {remote.filename} ({check}) unpacked into {target}")
    return done


def _parse_parts(text: str | None) -> list[int] | None:
    if not text:
        return None
    parts: set[int] = set()
    for piece in text.split(","):
        lo, _, hi = piece.partition("-")
        if not (lo.isdigit() and (hi.isdigit() or not hi)):
            raise UserError(f"--nih-archives {text}: {piece!r} is not a number or a range",
                            "give e.g. 1-3,7")
        parts.update(range(int(lo), int(hi or lo) + 1))
    if not parts <= set(range(1, 13)):
        raise UserError(f"--nih-archives {text}: archives are numbered 1-12",
                        "give e.g. 1-3,7")
    return sorted(parts)


def listing(data: Path, sources) -> str:
    """What ``download`` would fetch for ``sources``, from where, and where it goes."""
    lines = [f"{source:8s} {r.filename:48s} {r.md5 or '-':32s} {r.url}"
             for source in sources for r in REMOTES[source]]
    return "\n".join(lines + ["", missing_data_message(data, sources)])


def download_sources(sources, data: Path, base_url: str | None = None,
                     keep_archives: bool = False, parts: str | None = None) -> None:
    """Fetch and unpack ``sources`` into ``data`` (``parts``: NIH archives, e.g. ``"1-3,7"``)."""
    chosen = _parse_parts(parts)
    for source in sources:
        download_source(source, data, base_url=base_url, keep_archives=keep_archives,
                        parts=chosen)

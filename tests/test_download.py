"""The downloader against a real HTTP server on the loopback interface, serving small archives
that the tests build (the layouts of the public sources, made by tests/fixtures_sources)."""
from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import shutil
import tarfile
import threading
import zipfile
from pathlib import Path

import fixtures_sources as fx
import pytest

from cxrlib.data import download, sources
from cxrlib.data.download import DownloadError, Remote


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; honours 'Range: bytes=N-' (resumed downloads); records each request."""

    log: list = []
    #: Paths whose next whole-file request breaks off half way (an interrupted connection).
    cut: set = set()

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        path = Path(self.directory) / self.path.lstrip("/")
        self.log.append((self.path, self.headers.get("Range")))
        if not path.is_file():
            self.send_error(404, "not here")
            return
        data = path.read_bytes()
        start = 0
        if self.path in self.cut and not self.headers.get("Range"):
            self.cut.discard(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])  # then the connection closes
            return
        if self.headers.get("Range", "").startswith("bytes="):
            start = int(self.headers["Range"][6:].split("-")[0])
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    handler = lambda *a, **k: RangeHandler(*a, directory=str(root), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _zip_folder(folder: Path, archive: Path, prefix: str = "") -> None:
    with zipfile.ZipFile(archive, "w") as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                z.write(p, f"{prefix}{p.relative_to(folder).as_posix()}")


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def archives(server, tmp_path_factory):
    """Archives shaped like the public ones: Cohen's GitHub zip, Kermany's zip, NIH's tar.gz."""
    served, _ = server
    stage = tmp_path_factory.mktemp("stage")
    fx.make_cohen(stage)
    (stage / "cohen" / "README.md").write_text("not kept")
    cohen = download.REMOTES["cohen"][0]
    _zip_folder(stage / "cohen", served / cohen.filename, prefix=f"{cohen.strip}/")
    fx.make_kermany(stage, aspect_table=False)
    with zipfile.ZipFile(served / "ChestXRay2017.zip", "w") as z:
        for p in sorted((stage / "kermany").rglob("*")):
            if p.is_file():
                z.write(p, p.relative_to(stage / "kermany").as_posix())
        z.writestr("__MACOSX/chest_xray/._junk", b"mac metadata")
    fx.make_nih(stage)
    images = sorted((stage / "nih" / "images").iterdir())
    nih = []
    with gzip.open(served / "Data_Entry_2017_v2020.csv.gz", "wb") as f:
        f.write((stage / "nih" / "Data_Entry_2017_v2020.csv").read_bytes())
    nih.append(Remote("nih", "", "Data_Entry_2017_v2020.csv.gz", "gz",
                      out="Data_Entry_2017_v2020.csv"))
    for k, chunk in enumerate((images[:5], images[5:]), start=1):
        name = f"images_{k:03d}.tar.gz"
        with tarfile.open(served / name, "w:gz") as t:
            for p in chunk:
                t.add(p, f"images/{p.name}")
        nih.append(Remote("nih", "", name, "tar.gz", md5=_md5(served / name), keep=("images",)))
    return {"nih": tuple(nih), "n_nih_images": len(images)}


def test_downloads_verify_and_unpack_into_the_readers_layout(server, archives, tmp_path):
    _, base = server
    data = tmp_path / "data"
    for source in ("cohen", "kermany"):
        download.download_source(source, data, base_url=base, log=lambda *_: 0)
    download.download_source("nih", data, base_url=base, remotes=archives["nih"],
                             log=lambda *_: 0)
    assert not (data / "cohen" / "README.md").exists()  # only metadata.csv and images/ kept
    assert not (data / "kermany" / "__MACOSX").exists()
    assert len(list((data / "nih" / "images").iterdir())) == archives["n_nih_images"]
    df = sources.read_sources(data)
    assert set(df["source"]) == {"cohen", "kermany", "nih"}
    assert not (data / ".downloads" / "ChestXRay2017.zip").exists()  # archives removed
    marker = (data / "kermany" / ".cxrlib-download" / "ChestXRay2017.zip.done").read_text()
    assert "sha256=" in marker


def test_a_rerun_skips_finished_steps(server, archives, tmp_path):
    _, base = server
    download.download_source("kermany", tmp_path, base_url=base, log=lambda *_: 0)
    RangeHandler.log.clear()
    messages = []
    download.download_source("kermany", tmp_path, base_url=base, log=messages.append)
    assert RangeHandler.log == [] and "skipped" in messages[0]


def test_an_interrupted_download_resumes_with_a_range_request(server, archives, tmp_path):
    served, base = server
    remote = archives["nih"][1]
    whole = (served / remote.filename).read_bytes()
    part = tmp_path / ".downloads" / f"{remote.filename}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(whole[: len(whole) // 2])
    RangeHandler.log.clear()
    got = download.fetch(f"{base}/{remote.filename}", tmp_path / ".downloads" / remote.filename,
                         md5=remote.md5)
    assert got.read_bytes() == whole and not part.exists()
    assert RangeHandler.log == [(f"/{remote.filename}", f"bytes={len(whole) // 2}-")]


def test_a_checksum_mismatch_deletes_the_download_and_unpacks_nothing(server, archives,
                                                                      tmp_path):
    _, base = server
    bad = (archives["nih"][0], Remote("nih", "", "images_001.tar.gz", "tar.gz", md5="0" * 32,
                                      keep=("images",)))
    with pytest.raises(DownloadError, match="images_001.tar.gz: MD5 .* does not match"):
        download.download_source("nih", tmp_path, base_url=base, remotes=bad, log=lambda *_: 0)
    assert not (tmp_path / "nih" / "images").exists()
    assert not list((tmp_path / ".downloads").glob("images_001*"))


def test_http_errors_and_unsafe_archives_are_refused(server, tmp_path):
    served, base = server
    with pytest.raises(DownloadError, match="HTTP 404.*by hand"):
        download.fetch(f"{base}/absent.zip", tmp_path / "absent.zip")
    evil = served / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as t:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        t.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(DownloadError, match="outside"):
        download.download_source("nih", tmp_path, base_url=base, log=lambda *_: 0, remotes=(
            Remote("nih", "", "evil.tar.gz", "tar.gz", keep=("images",)),))
    assert not (tmp_path / "escaped.txt").exists()
    shutil.rmtree(tmp_path / ".downloads", ignore_errors=True)


def test_the_address_table_and_the_instructions():
    assert len([r for r in download.REMOTES["nih"] if r.kind == "tar.gz"]) == 12
    assert all(len(r.md5) == 32 for r in download.REMOTES["nih"] if r.kind == "tar.gz")
    assert download.COHEN_COMMIT in download.REMOTES["cohen"][0].url
    text = download.missing_data_message(Path("/data"))
    for needle in ("cohen/", "kermany/", "nih/", "rscbjbr9sj", "ChestXray-NIHCC",
                   "python -m cxrlib download"):
        assert needle in text


def test_command_line_lists_what_it_would_fetch(capsys):
    from cxrlib.__main__ import main

    assert main(["download", "--list", "--data", "/tmp/nowhere", "--source", "nih"]) == 0
    out = capsys.readouterr().out
    assert "images_012.tar.gz" in out and "dc9fda1757c2de0032b63347a7d2895c" in out


def test_a_connection_that_breaks_off_resumes_by_itself_and_shows_its_progress(
        server, archives, tmp_path):
    served, base = server
    remote = archives["nih"][1]
    whole = (served / remote.filename).read_bytes()
    RangeHandler.cut.add(f"/{remote.filename}")
    RangeHandler.log.clear()
    shown = io.StringIO()
    got = download.fetch(f"{base}/{remote.filename}", tmp_path / remote.filename,
                         md5=remote.md5, chunk=256, wait=0,
                         progress=download.Progress(shown, every=0))
    assert got.read_bytes() == whole
    assert RangeHandler.log == [(f"/{remote.filename}", None),
                                (f"/{remote.filename}", f"bytes={len(whole) // 2}-")]
    lines = shown.getvalue().splitlines()
    total = download.human_size(len(whole))
    assert all(f" of {total} (" in line and "/s" in line for line in lines)
    assert lines[0].startswith(f"{remote.filename}: 0 B of {total} (0%)")
    assert any(line.endswith(" s left") for line in lines)
    assert "(100%)" in lines[-1] and lines[-1].endswith(", done")


def test_without_retries_an_interrupted_download_is_kept_for_a_rerun(server, archives,
                                                                      tmp_path):
    served, base = server
    remote = archives["nih"][1]
    whole = (served / remote.filename).read_bytes()
    RangeHandler.cut.add(f"/{remote.filename}")
    dest = tmp_path / remote.filename
    with pytest.raises(DownloadError, match="interrupted .* after 1 tries — rerun to resume"):
        download.fetch(f"{base}/{remote.filename}", dest, md5=remote.md5, retries=0)
    assert dest.with_name(dest.name + ".part").stat().st_size == len(whole) // 2
    assert download.fetch(f"{base}/{remote.filename}", dest, md5=remote.md5).read_bytes() == whole


def test_progress_lines_say_size_rate_and_time_left():
    clock = iter([0.0, 10.0]).__next__
    shown = io.StringIO()
    progress = download.Progress(shown, every=0, clock=clock)
    progress("images_001.tar.gz", 1_000_000_000, 4_000_000_000)   # resumed at 1 GB
    progress("images_001.tar.gz", 1_200_000_000, 4_000_000_000)   # 200 MB in 10 s
    assert shown.getvalue().splitlines()[-1] == (
        "images_001.tar.gz: 1.20 GB of 4.00 GB (30%), 20.0 MB/s, 2 min 20 s left")
    assert download.human_duration(3725) == "1 h 02 min"
    assert download.progress_line("x", 5, None, 5, 1.0) == "x: 5 B, 5 B/s"

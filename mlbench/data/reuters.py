"""Reuters-21578, ApteMod split (90 categories, 7,769 train / 3,019 test documents).

Why regex and not an XML parser: the SGML files are not well-formed XML (bare ``&``,
``<`` inside bodies, undeclared entities). Each file is read as latin-1 and scanned
for ``<REUTERS ...>...</REUTERS>`` blocks.
"""

from __future__ import annotations

import html
import io
import os
import re
import tarfile
import tempfile
import zipfile
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import numpy as np

from mlbench.data.corpus import Corpus, Split
from mlbench.data.download import (
    DownloadError,
    Pin,
    cache_root,
    download,
    sibling_data_dir,
    verify_file,
)
from mlbench.data.splits import split_off
from mlbench.errors import InputError

__all__ = [
    "REUTERS_URL",
    "ENV_VAR",
    "SGML_FILES",
    "SGML_PINS",
    "Article",
    "parse_sgml",
    "locate_reuters",
    "load_reuters",
]

REUTERS_URL = (
    "https://archive.ics.uci.edu/static/public/137/"
    "reuters+21578+text+categorization+collection.zip"
)
ENV_VAR = "MLBENCH_REUTERS"
SGML_FILES = tuple(f"reut2-{i:03d}.sgm" for i in range(22))
VAL_SIZE = 1000
MIN_BYTES = 1_000_000
# Pinned: hashed from the 22 files in ../shared/data/reuters21578 (the UCI distribution).
# The UCI zip itself could not be fetched from the project's machines, so it has no pin;
# the files extracted from it are checked against these.
SGML_PINS: dict[str, Pin] = {
    "reut2-000.sgm": Pin(1324355, "686f5cf549930e23184bcba2328c7d01348df20f7167ff25e6d3495090c3f822"),
    "reut2-001.sgm": Pin(1254436, "b7fc3231dd9f95fb53518f8d5739d41524fa8dacdb21ddb7f612d9a475c14ea1"),
    "reut2-002.sgm": Pin(1217495, "99f18068d0518952987dedd78c622e5c2a584e357d264d3754696c815f3e6628"),
    "reut2-003.sgm": Pin(1298718, "24c0aec30c53acfeceff6df391a278282f61febdea3852e74f1ae01af088d5bd"),
    "reut2-004.sgm": Pin(1321623, "726342c19a65873330b412378cd6a3f0d512035f5223146ddd60930c62eb6ff0"),
    "reut2-005.sgm": Pin(1388644, "d09de619b6dd2d047d5124681f6df90550abaf592020d1c1ce338ae9b91522e7"),
    "reut2-006.sgm": Pin(1254765, "b5535c0d66b01f4976f84621a4a795afbc00d2c4bd0a1b7ae426df6630fb361d"),
    "reut2-007.sgm": Pin(1256772, "aa706007ec84a03537a3921ca976d60e11b3f99e4b9e9b2d5c81dd384d2c2062"),
    "reut2-008.sgm": Pin(1410117, "a3994583694a00b7c744097c1d7eabfcf90f2e6650cc21663e46828035a336cb"),
    "reut2-009.sgm": Pin(1338903, "29995f606dd1a9bdf907eacc9d879846c716860d9d9141676979474aaea39c7d"),
    "reut2-010.sgm": Pin(1371071, "996df6008089bd09fa5b28a4d2eb0ee5f7b9d4601cde566fed3926ac82960fa3"),
    "reut2-011.sgm": Pin(1304117, "d3a2782015247d9c2bffb8926267827fdd449c70d619435ef01a25a1c56a53ca"),
    "reut2-012.sgm": Pin(1323584, "da31035d483851f2aebce5b66d779e5e2c0ac9dcfe098596c6d544e81c5604ab"),
    "reut2-013.sgm": Pin(1129687, "8f7700bc0455fac3fcc12377ced4807b7df8aba1f21ecad059b9cc2b1cf0b8be"),
    "reut2-014.sgm": Pin(1128671, "ef936bd3e0f36cf722afa9a6957563549775af32e9e28b4f539c8737ceda83ab"),
    "reut2-015.sgm": Pin(1258665, "6d3bcec73eff871b8a5403588af814c4e50a0de6bc25707480522ab836f74026"),
    "reut2-016.sgm": Pin(1316417, "be2f03a185fff70131f3b4fdbd6229b7ee2be077eba9691eaa597c8cfbda8812"),
    "reut2-017.sgm": Pin(1546911, "f370e610b4b1342e41a98e0c426a08541044bd1d7e539674f32372a6060b73b5"),
    "reut2-018.sgm": Pin(1258819, "a5f971bf25448e915781962309e669359a35fbcaf3017a806eca0590897f209a"),
    "reut2-019.sgm": Pin(1261780, "d3b07097fba2633d130b4914aceba671645985248943ce9e39c289315339dffb"),
    "reut2-020.sgm": Pin(1049566, "f6ad1b724125c202566c63b35ea0b5ee23881f8b7ed47a32829d5af05d8e860d"),
    "reut2-021.sgm": Pin(621648, "3f5196d32869723c9042aa5756805b4e90360f1f45ea17f4594fa0e2b3630b18"),
}

_DOC = re.compile(r"<REUTERS([^>]*)>(.*?)</REUTERS>", re.S)
_ATTR = re.compile(r'(\w+)="([^"]*)"')
_TOPICS = re.compile(r"<TOPICS>(.*?)</TOPICS>", re.S)
_D = re.compile(r"<D>(.*?)</D>", re.S)
_TITLE = re.compile(r"<TITLE>(.*?)</TITLE>", re.S)
_BODY = re.compile(r"<BODY>(.*?)</BODY>", re.S)
_TEXT = re.compile(r"<TEXT[^>]*>(.*?)</TEXT>", re.S)
_TAG = re.compile(r"<[^>]*>")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class Article(NamedTuple):
    """One ApteMod candidate: its Lewis split ("TRAIN"/"TEST"), topics and text."""

    split: str
    topics: tuple[str, ...]
    text: str
    newid: str


def _clean(fragment: str) -> str:
    """Resolve SGML entities / character references, drop control chars (&#3; etc.)."""
    return _CONTROL.sub("", html.unescape(fragment)).replace("\r", "").strip()


def parse_sgml(text: str) -> Iterator[Article]:
    """Yield TOPICS="YES" documents whose LEWISSPLIT is TRAIN or TEST.

    Text is TITLE + newline + BODY; a document with a title but no body keeps the
    title alone; the few TYPE="UNPROC" documents (no TITLE/BODY) use their raw TEXT.
    """
    for m in _DOC.finditer(text):
        attrs = dict(_ATTR.findall(m.group(1)))
        split = attrs.get("LEWISSPLIT")
        if attrs.get("TOPICS") != "YES" or split not in ("TRAIN", "TEST"):
            continue
        inner = m.group(2)
        topics_m = _TOPICS.search(inner)
        raw_topics = _D.findall(topics_m.group(1)) if topics_m else []
        topics = tuple(dict.fromkeys(_clean(t) for t in raw_topics))
        title_m, body_m = _TITLE.search(inner), _BODY.search(inner)
        parts = [_clean(x.group(1)) for x in (title_m, body_m) if x]
        if not parts:
            text_m = _TEXT.search(inner)
            parts = [_clean(_TAG.sub(" ", text_m.group(1)))] if text_m else []
        body = "\n".join(p for p in parts if p)
        yield Article(split, tuple(t for t in topics if t), body, attrs.get("NEWID", "?"))


def _missing(folder: Path) -> list[str]:
    return [name for name in SGML_FILES if not (folder / name).is_file()]


def _check_folder(folder: Path, origin: str) -> Path:
    folder = folder.expanduser()
    if not folder.is_dir():
        raise InputError(f"{folder}: folder not found (from {origin})")
    missing = _missing(folder)
    if missing:
        raise InputError(
            f"{folder / missing[0]}: file not found (from {origin}; "
            f"{len(missing)} of the 22 reut2-NNN.sgm files are missing)"
        )
    return folder


def cache_dir() -> Path:
    return cache_root() / "reuters21578"


def locate_reuters(
    data_dir: str | Path | None = None, progress: Callable[[str], None] | None = None
) -> Path:
    """data_dir, then $MLBENCH_REUTERS, then the cache, then ../shared/data/reuters21578
    beside the checkout, then download + extract into the cache."""
    if data_dir is not None:
        return _check_folder(Path(data_dir), "data_dir")
    env = os.environ.get(ENV_VAR)
    if env:
        return _check_folder(Path(env), f"${ENV_VAR}")
    folder = cache_dir()
    if folder.is_dir() and not _missing(folder):
        return folder
    local = sibling_data_dir("reuters21578")
    if local is not None and not _missing(local):
        return local
    try:
        _download_and_extract(folder, progress)
    except OSError as err:
        raise InputError(
            f"reuters data not found and could not be downloaded ({err}); put the 22 "
            f"reut2-000.sgm … reut2-021.sgm files in {folder}, or point ${ENV_VAR} or "
            f"--data-dir at their folder (source: {REUTERS_URL})"
        ) from None
    return folder


def _download_and_extract(folder: Path, progress: Callable[[str], None] | None) -> None:
    """UCI zip → reuters21578.tar.gz → the .sgm files, written by base name only.

    The zip has no pin (it could not be fetched when the pins were written); its sha256
    is recorded as ``reuters21578.zip.sha256`` in the folder, and the extracted files are
    checked against `SGML_PINS` by `load_reuters`.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        archive = download(
            REUTERS_URL, Path(tmp) / "reuters21578.zip", min_bytes=MIN_BYTES, progress=progress
        )
        try:
            with zipfile.ZipFile(archive) as zf:
                for name in zf.namelist():
                    base = name.rsplit("/", 1)[-1]
                    if base in SGML_FILES:
                        _write(folder / base, zf.read(name))
                    elif base.endswith((".tar.gz", ".tgz")):
                        data = io.BytesIO(zf.read(name))
                        with tarfile.open(fileobj=data, mode="r:gz") as tf:
                            for member in tf:
                                mbase = member.name.rsplit("/", 1)[-1]
                                if member.isfile() and mbase in SGML_FILES:
                                    _write(folder / mbase, tf.extractfile(member).read())
        except (zipfile.BadZipFile, tarfile.TarError, EOFError) as err:
            raise DownloadError(f"{REUTERS_URL}: bad archive ({err})") from err
        record = Path(tmp) / "reuters21578.zip.sha256"  # the archive's hash, kept for provenance
        if record.is_file():
            _write(folder / record.name, record.read_bytes())
    missing = _missing(folder)
    if missing:
        raise DownloadError(f"{REUTERS_URL}: archive lacks {', '.join(missing[:3])}")


def _write(dest: Path, data: bytes) -> None:
    tmp = dest.with_name(f".{dest.name}.part")
    tmp.write_bytes(data)
    os.replace(tmp, dest)


def verify_reuters(folder: Path) -> None:
    """Check the 22 SGML files against `SGML_PINS`; a bad file in the suite's cache is
    moved aside (files elsewhere are never moved). Raises InputError on a mismatch."""
    in_cache = folder.resolve() == cache_dir().resolve()
    for name in SGML_FILES:
        verify_file(folder / name, SGML_PINS[name], aside=in_cache)


def load_reuters(
    data_dir: str | Path | None = None,
    *,
    seed: int = 42,
    split_method: str = "stratified",
    verify: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Corpus:
    """ApteMod: keep categories with ≥1 train and ≥1 test document, drop documents
    left without one, then split 1,000 validation documents off train (seeded).

    ``verify``: check the files' sha256 against the pins first (turn off only for a
    deliberately edited copy; the corpus notes say whether they were checked).
    """
    folder = locate_reuters(data_dir, progress)
    if verify:
        verify_reuters(folder)
    articles: list[Article] = []
    if progress:
        progress(f"reading {len(SGML_FILES)} SGML files in {folder}" + (" (sha256 verified)" if verify else ""))
    for name in SGML_FILES:
        articles.extend(parse_sgml((folder / name).read_text(encoding="latin-1")))
    in_train = Counter(t for a in articles if a.split == "TRAIN" for t in a.topics)
    in_test = Counter(t for a in articles if a.split == "TEST" for t in a.topics)
    categories = {t for t in in_train if t in in_test}

    kept: dict[str, tuple[list[str], list[tuple[str, ...]]]] = {"TRAIN": ([], []), "TEST": ([], [])}
    no_category = empty_text = 0
    for art in articles:
        topics = tuple(t for t in art.topics if t in categories)
        if not topics:
            no_category += 1
        elif not art.text:
            empty_text += 1
        else:
            kept[art.split][0].append(art.text)
            kept[art.split][1].append(topics)
    if not categories or len(kept["TRAIN"][0]) <= VAL_SIZE or not kept["TEST"][0]:
        raise InputError(
            f"{folder}: only {len(kept['TRAIN'][0])} train / {len(kept['TEST'][0])} test "
            f"ApteMod documents with {len(categories)} categories; the reut2-*.sgm files "
            "look truncated"
        )
    train_all = Split(*kept["TRAIN"])
    train_idx, val_idx, how = split_off(
        np.arange(len(train_all)), train_all.labels, VAL_SIZE, seed, split_method
    )
    return Corpus(
        name="reuters",
        train=train_all.subset(train_idx),
        val=train_all.subset(val_idx),
        test=Split(*kept["TEST"]),
        source=str(folder),
        notes={
            "subset": "ApteMod",
            "categories": len(categories),
            "documents_without_category_dropped": no_category,
            "documents_without_text_dropped": empty_text,
            "split_origin": "given train/test, val made by the suite",
            "split": f"ApteMod train/test; val = {VAL_SIZE} of train, {how}",
            "seed": seed,
            "files_verified": "sha256 pinned (22 files)" if verify else "not checked (verify=False)",
        },
    )

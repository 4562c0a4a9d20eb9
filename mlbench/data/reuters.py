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
from mlbench.data.download import DownloadError, cache_root, download, sibling_data_dir
from mlbench.data.splits import split_off
from mlbench.errors import InputError

__all__ = [
    "REUTERS_URL",
    "ENV_VAR",
    "SGML_FILES",
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
    """UCI zip → reuters21578.tar.gz → the .sgm files, written by base name only."""
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
    missing = _missing(folder)
    if missing:
        raise DownloadError(f"{REUTERS_URL}: archive lacks {', '.join(missing[:3])}")


def _write(dest: Path, data: bytes) -> None:
    tmp = dest.with_name(f".{dest.name}.part")
    tmp.write_bytes(data)
    os.replace(tmp, dest)


def load_reuters(
    data_dir: str | Path | None = None,
    *,
    seed: int = 42,
    split_method: str = "stratified",
    progress: Callable[[str], None] | None = None,
) -> Corpus:
    """ApteMod: keep categories with ≥1 train and ≥1 test document, drop documents
    left without one, then split 1,000 validation documents off train (seeded)."""
    folder = locate_reuters(data_dir, progress)
    articles: list[Article] = []
    for name in SGML_FILES:
        if progress:
            progress(f"reading {folder / name}")
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
            "split": f"ApteMod train/test; val = {VAL_SIZE} of train, {how}",
            "seed": seed,
        },
    )

"""Verified data files: pinned hashes, record-and-verify cache entries, bad files moved aside."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from mlbench.data import arxiv as arxiv_mod
from mlbench.data import download as download_mod
from mlbench.data import load_corpus
from mlbench.data import reuters as reuters_mod
from mlbench.data.download import Pin, sha256_of, verify_file, verify_recorded
from mlbench.errors import InputError


def test_pinned_file_passes_and_a_corrupted_one_is_refused(tmp_path: Path) -> None:
    good = tmp_path / "data.bin"
    good.write_bytes(b"the original bytes\n")
    pin = Pin(good.stat().st_size, sha256_of(good))
    assert verify_file(good, pin) == pin.sha256

    good.write_bytes(b"the 0riginal bytes\n")  # one byte flipped, same size
    actual = sha256_of(good)
    with pytest.raises(InputError) as info:
        verify_file(good, pin)  # a user's file: refused, never moved
    msg = str(info.value)
    assert str(good) in msg and pin.sha256 in msg and actual in msg and "\n" not in msg
    assert good.exists()

    with pytest.raises(InputError, match="moved aside"):
        verify_file(good, pin, aside=True)  # the suite's cache: renamed, not deleted
    assert not good.exists()
    (aside,) = tmp_path.glob("data.bin.bad-*")
    assert aside.read_bytes() == b"the 0riginal bytes\n"


def test_size_mismatch_is_named(tmp_path: Path) -> None:
    f = tmp_path / "short.bin"
    f.write_bytes(b"abc")
    with pytest.raises(InputError, match=r"size 3 bytes, expected 4"):
        verify_file(f, Pin(4, "0" * 64))


def test_record_and_verify_trusts_first_use_then_refuses_changes(tmp_path: Path) -> None:
    f = tmp_path / "cache.csv"
    f.write_bytes(b"a,b\n1,2\n")
    digest, recorded_now = verify_recorded(f)
    assert recorded_now and (tmp_path / "cache.csv.sha256").read_text().split()[0] == digest
    assert verify_recorded(f) == (digest, False)
    f.write_bytes(b"a,b\n1,3\n")
    with pytest.raises(InputError) as info:
        verify_recorded(f)
    assert digest in str(info.value) and sha256_of(next(tmp_path.glob("cache.csv.bad-*"))) in str(info.value)
    assert not f.exists()


class _Resp(io.BytesIO):
    def __enter__(self):
        return self


def test_download_with_a_wrong_expected_hash_keeps_the_bytes_aside(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MLBENCH_OFFLINE", raising=False)
    monkeypatch.setattr(download_mod, "urlopen", lambda url, timeout: _Resp(b"y" * 2000))
    with pytest.raises(InputError) as info:
        download_mod.download("http://x/f.zip", tmp_path / "f.zip", min_bytes=10,
                              expected_sha256="ab" * 32)
    assert "ab" * 32 in str(info.value) and sha256_of_bytes(b"y" * 2000) in str(info.value)
    assert not (tmp_path / "f.zip").exists()
    assert len(list(tmp_path.glob("f.zip.bad-*"))) == 1


def sha256_of_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_corrupted_arxiv_cache_is_moved_aside_and_downloaded_again(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLBENCH_CACHE", str(tmp_path))
    monkeypatch.delenv("MLBENCH_ARXIV", raising=False)
    monkeypatch.delenv("MLBENCH_OFFLINE", raising=False)
    payload = b"titles,summaries,terms\n" + b"t,s,['a']\n" * 10
    monkeypatch.setattr(download_mod, "urlopen", lambda url, timeout: _Resp(payload))
    monkeypatch.setattr(arxiv_mod, "MIN_BYTES", 10)
    first = arxiv_mod.locate_arxiv()  # downloaded: hash recorded beside it
    assert first == arxiv_mod.cache_path() and (first.parent / "arxiv_data.csv.sha256").is_file()
    assert arxiv_mod.locate_arxiv() == first  # verified against the record
    first.write_bytes(payload.replace(b"'a'", b"'b'"))
    with pytest.raises(InputError, match="arxiv_data.csv: sha256"):
        arxiv_mod.locate_arxiv()
    assert list(first.parent.glob("arxiv_data.csv.bad-*")) and not first.exists()
    assert arxiv_mod.locate_arxiv().read_bytes() == payload  # fetched again, not reused


def test_reuters_pins_match_the_shared_files(reuters_dir: Path) -> None:
    for name in reuters_mod.SGML_FILES:
        pin = reuters_mod.SGML_PINS[name]
        assert (reuters_dir / name).stat().st_size == pin.size
    reuters_mod.verify_reuters(reuters_dir)  # all 22 sha256


def test_arxiv_sample_pin_matches(arxiv_sample: Path) -> None:
    assert verify_file(arxiv_sample, arxiv_mod.SAMPLE_PIN)


def _reuters_copy(src: Path, dest: Path, corrupt: str) -> Path:
    """Symlinks to the real files, except one corrupted copy."""
    dest.mkdir(parents=True)
    for name in reuters_mod.SGML_FILES:
        if name == corrupt:
            data = bytearray((src / name).read_bytes())
            data[1000] ^= 1
            (dest / name).write_bytes(bytes(data))
        else:
            (dest / name).symlink_to(src / name)
    return dest


def test_reuters_refuses_a_corrupted_file(reuters_dir: Path, tmp_path: Path, monkeypatch) -> None:
    folder = _reuters_copy(reuters_dir, tmp_path / "mine", "reut2-007.sgm")
    with pytest.raises(InputError) as info:
        load_corpus("reuters", data_dir=folder)
    msg = str(info.value)
    assert "reut2-007.sgm" in msg and reuters_mod.SGML_PINS["reut2-007.sgm"].sha256 in msg
    assert (folder / "reut2-007.sgm").exists()  # the user's folder is not touched

    monkeypatch.setenv("MLBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MLBENCH_REUTERS", raising=False)
    cache = _reuters_copy(reuters_dir, tmp_path / "cache" / "reuters21578", "reut2-003.sgm")
    with pytest.raises(InputError, match="reut2-003.sgm.*moved aside"):
        load_corpus("reuters")
    assert not (cache / "reut2-003.sgm").exists() and list(cache.glob("reut2-003.sgm.bad-*"))


def test_reuters_download_is_extracted_verified_and_recorded(reuters_dir: Path, tmp_path: Path,
                                                              monkeypatch) -> None:
    import zipfile

    def archive(corrupt: str | None) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
            for name in reuters_mod.SGML_FILES:
                data = (reuters_dir / name).read_bytes()
                zf.writestr(f"reuters21578/{name}", data[:-1] + b"?" if name == corrupt else data)
        return buf.getvalue()

    monkeypatch.setenv("MLBENCH_CACHE", str(tmp_path))
    monkeypatch.delenv("MLBENCH_REUTERS", raising=False)
    monkeypatch.delenv("MLBENCH_OFFLINE", raising=False)
    monkeypatch.setattr(reuters_mod, "sibling_data_dir", lambda name: None)
    payload = archive("reut2-021.sgm")
    monkeypatch.setattr(download_mod, "urlopen", lambda url, timeout: _Resp(payload))
    with pytest.raises(InputError, match="reut2-021.sgm: sha256 .* moved aside"):
        load_corpus("reuters")
    cache = tmp_path / "reuters21578"
    assert list(cache.glob("reut2-021.sgm.bad-*")) and not (cache / "reut2-021.sgm").exists()
    record = (cache / "reuters21578.zip.sha256").read_text().split()[0]
    assert record == sha256_of_bytes(payload)

    payload = archive(None)  # the next run downloads again and gets the right bytes
    c = load_corpus("reuters")
    assert len(c.test) == 3019 and c.notes["files_verified"].startswith("sha256 pinned")

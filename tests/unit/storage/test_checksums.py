"""The storage layer's fast adler32 gives exactly zlib's values."""

from __future__ import annotations

import zlib
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from fedlake.storage.checksums import adler32, checksummer, file_digest


@given(st.lists(st.binary(max_size=20_000), max_size=5))
def test_adler32_matches_zlib_chunk_by_chunk(chunks: list[bytes]) -> None:
    ours, ref = 1, 1
    for c in chunks:
        ours = adler32(c, ours)
        ref = zlib.adler32(c, ref)
    assert ours & 0xFFFFFFFF == ref & 0xFFFFFFFF


def test_checksummer_and_file_digest_agree_with_zlib(tmp_path: Path) -> None:
    data = bytes(range(256)) * 40_000  # 10 MB: several read blocks
    f = tmp_path / "f"
    f.write_bytes(data)
    summer = checksummer(md5=True)
    summer.update(data)
    want = f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"
    assert summer.digest().adler32 == want
    d = file_digest(f, md5=False)
    assert (d.bytes, d.adler32, d.md5) == (len(data), want, None)

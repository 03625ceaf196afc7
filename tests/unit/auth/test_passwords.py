"""Password hashing: scrypt with a random salt, verification in constant time."""

from __future__ import annotations

import base64

import pytest

from fedlake.auth import passwords
from fedlake.auth.passwords import hash_password, verify_password


@pytest.fixture(autouse=True)
def _default_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    """The production cost (tests/conftest.py lowers it for the rest of the suite)."""
    monkeypatch.setattr(passwords, "SCRYPT_N", 2**14)


def test_round_trip() -> None:
    encoded = hash_password("s3cret pässword")
    assert verify_password("s3cret pässword", encoded)
    assert not verify_password("s3cret password", encoded)
    assert not verify_password("", encoded)


def test_format_and_salt() -> None:
    first, second = hash_password("same"), hash_password("same")
    assert first != second  # random salt
    algo, n, r, p, salt, key = first.split("$")
    assert (algo, n, r, p) == ("scrypt", str(2**14), "8", "1")
    assert len(base64.b64decode(salt)) == 16
    assert len(base64.b64decode(key)) == 32
    assert "same" not in first


def test_empty_password_hashes() -> None:
    encoded = hash_password("")
    assert verify_password("", encoded)
    assert not verify_password(" ", encoded)


def test_parameters_are_read_from_the_hash() -> None:
    """An old hash made with other scrypt parameters still verifies."""
    import hashlib

    salt = b"0123456789abcdef"
    key = hashlib.scrypt(b"pw", salt=salt, n=2**10, r=4, p=1, dklen=16)
    encoded = f"scrypt$1024$4$1${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"
    assert verify_password("pw", encoded)
    assert not verify_password("px", encoded)


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "plain",
        "scrypt$1$2$3",
        "bcrypt$16384$8$1$c2FsdA==$a2V5",
        "$$$$$",
        # corrupt scrypt hashes: bad numbers, bad base64, impossible parameters
        "scrypt$$$$$",
        "scrypt$x$8$1$c2FsdA==$a2V5",
        "scrypt$16384$8$1$!!!$a2V5",
        "scrypt$1000$8$1$c2FsdA==$a2V5",
        "scrypt$16384$8$1$c2FsdA==$",
        "scrypt$1073741824$8$1$c2FsdA==$a2V5",
    ],
)
def test_malformed_hashes_never_verify(encoded: str) -> None:
    assert verify_password("pw", encoded) is False

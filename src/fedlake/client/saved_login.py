"""Tokens saved by ``fedlake login`` (device code) for the CLI's client.

One JSON file, ``<FEDLAKE_DATA_DIR or ~/.fedlake>/tokens.json``, mode 0600, holding the
lake's URL, the access token, its expiry, the refresh token and the OAuth client id.
``Client`` uses it when FEDLAKE_TOKEN and FEDLAKE_USERNAME/PASSWORD are not set, and
refreshes the access token (refresh_token grant; the refresh token is rotated) when it
expires within ``MARGIN`` seconds. ``fedlake logout`` revokes both and deletes the file.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import httpx

from fedlake.domain.errors import AuthenticationFailed

__all__ = ["MARGIN", "SavedLogin", "delete", "load", "path", "refresh", "save"]

MARGIN = 120  # refresh when the access token has less than this left (seconds)
FILE = "tokens.json"


@dataclass(frozen=True)
class SavedLogin:
    url: str
    access_token: str
    expires_at: int
    refresh_token: str | None
    client_id: str

    def near_expiry(self) -> bool:
        return self.expires_at - time.time() < MARGIN


def path(data_dir: Path) -> Path:
    return data_dir / FILE


def load(data_dir: Path, url: str) -> SavedLogin | None:
    """The saved login for ``url``, or None (no file, another lake, unreadable)."""
    try:
        data = json.loads(path(data_dir).read_text())
        saved = SavedLogin(**{k: data[k] for k in SavedLogin.__dataclass_fields__})
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return saved if saved.url.rstrip("/") == url.rstrip("/") else None


def save(data_dir: Path, saved: SavedLogin) -> Path:
    """Write the file atomically, readable by its owner only."""
    data_dir.mkdir(parents=True, exist_ok=True)
    target = path(data_dir)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(saved), f)
    os.chmod(tmp, 0o600)
    os.replace(tmp, target)
    return target


def delete(data_dir: Path) -> bool:
    try:
        path(data_dir).unlink()
    except FileNotFoundError:
        return False
    return True


def refresh(http: httpx.Client, data_dir: Path, saved: SavedLogin) -> SavedLogin:
    """New tokens from the refresh token, saved; AuthenticationFailed if refused."""
    if not saved.refresh_token:
        raise AuthenticationFailed("the saved login has expired; run `fedlake login` again")
    r = http.post(
        "/oidc/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": saved.refresh_token,
            "client_id": saved.client_id,
        },
    )
    if r.status_code != 200:
        try:
            why = r.json().get("error_description", r.text)
        except ValueError:
            why = r.text
        raise AuthenticationFailed(
            f"the saved login cannot be refreshed ({why}); run `fedlake login`"
        )
    body = r.json()
    new = replace(
        saved,
        access_token=body["access_token"],
        expires_at=int(time.time()) + int(body.get("expires_in", 0)),
        refresh_token=body.get("refresh_token", saved.refresh_token),
    )
    save(data_dir, new)
    return new

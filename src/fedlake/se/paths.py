"""From a request path to a file below the served root, never outside it.

The ASGI server gives the path percent-decoded (``%2e%2e`` is already ``..``). A path is
refused (:class:`BadPath`, HTTP 400) when it holds a NUL or another control character, a
backslash, or a ``..`` segment; a path whose real location (symbolic links resolved) is
not below the root's real location is refused as :class:`OutsideRoot` (HTTP 403). The
SE's own state directory ``/.fedlake-se`` is not served (as if it did not exist).
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass

__all__ = ["STATE_DIR", "BadPath", "OutsideRoot", "Resolved", "Resolver", "clean_path"]

#: the SE's own directory below the root (checksum sidecars); never served
STATE_DIR = ".fedlake-se"
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\\]")


class BadPath(ValueError):
    """The request path is malformed (HTTP 400)."""


class OutsideRoot(PermissionError):
    """The request path leads outside the served root (HTTP 403)."""


def clean_path(path: str) -> str:
    """The normalised URL path (``/a/b``, ``/`` for the root); BadPath if it is malformed."""
    if not path.startswith("/"):
        raise BadPath(f"the path {path[:200]!r} is not absolute")
    if _FORBIDDEN.search(path):
        raise BadPath("the path holds a backslash or a control character")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BadPath("the path climbs up with '..'; paths are resolved below the root only")
    if len(path.encode()) > 4096 or any(len(p.encode()) > 255 for p in parts):
        raise BadPath("the path (or one of its names) is too long")
    return "/" + "/".join(parts)


@dataclass(frozen=True, slots=True)
class Resolved:
    """A request path and the file behind it."""

    url_path: str  # clean, as authorised (``/cms/a.root``)
    fs_path: str  # the real path on disk (symbolic links resolved): what is read
    entry: str  # the real parent directory and the name: what is written, renamed, deleted
    stat: os.stat_result | None = None  # of fs_path, when it exists (None: it does not)

    @property
    def is_root(self) -> bool:
        return self.url_path == "/"

    @property
    def name(self) -> str:
        return self.url_path.rsplit("/", 1)[-1]


class Resolver:
    """Maps URL paths below ``root`` to real file-system paths."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.path.realpath(root)
        if not os.path.isdir(self.root):
            raise NotADirectoryError(f"the SE root {root} is not a directory")
        self._state = os.path.join(self.root, STATE_DIR)
        self._state_prefix = self._state + "/"

    def resolve(self, path: str) -> Resolved:
        """The file behind ``path`` (which need not exist); BadPath or OutsideRoot."""
        clean = clean_path(path)
        if clean == f"/{STATE_DIR}" or clean.startswith(f"/{STATE_DIR}/"):
            raise FileNotFoundError(2, f"{clean}: no such file or directory")
        if clean == "/":
            return Resolved(clean, self.root, self.root, os.stat(self.root))
        parts = clean[1:].split("/")
        real = self.root
        found: os.stat_result | None = None
        for i, part in enumerate(parts):
            parent = real
            real = f"{parent}/{part}" if parent != "/" else f"/{part}"
            if found is None and i > 0:
                continue  # below a missing directory: nothing more to look at
            try:
                found = os.lstat(real)
            except (FileNotFoundError, NotADirectoryError):
                found = None
                continue
            if stat.S_ISLNK(found.st_mode):  # rare: resolve the whole link chain
                real = os.path.realpath(real)
                if not self.inside(real):
                    raise OutsideRoot(
                        f"{clean} leads outside the served directory (a symbolic link)"
                    )
                try:
                    found = os.stat(real)
                except OSError:  # dangling, or a loop
                    found = None
        entry = f"{parent}/{parts[-1]}" if parent != "/" else f"/{parts[-1]}"
        if self._in_state_dir(real) or self._in_state_dir(entry):
            raise FileNotFoundError(2, f"{clean}: no such file or directory")
        return Resolved(clean, real, entry, found)

    def _in_state_dir(self, real: str) -> bool:
        return real == self._state or real.startswith(self._state_prefix)

    def inside(self, real: str) -> bool:
        return real == self.root or real.startswith(self.root.rstrip("/") + "/")

    def state_dir(self) -> str:
        return os.path.join(self.root, STATE_DIR)

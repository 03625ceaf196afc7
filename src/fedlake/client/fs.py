"""``fedlake://scope/name``: an fsspec filesystem over the lake (read-only).

``fsspec.open("fedlake://user.root/obs1.fits")`` lets pandas, xarray, astropy, uproot and
dask read lake files. Bytes are read through the server in byte ranges
(``GET /files`` with ``Range``), block by block, so seeks are cheap.
Listing: ``ls("")`` gives scopes, ``ls("scope")`` its DIDs, ``ls("scope/dataset")`` the
content of a collection. Configuration as for :class:`fedlake.client.Client`.
"""

from __future__ import annotations

from typing import Any

from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from fedlake.client.http import Client, ClientConfig
from fedlake.domain.errors import DIDNotFound

__all__ = ["FedlakeFileSystem"]


class FedlakeFileSystem(AbstractFileSystem):  # type: ignore[misc]
    protocol = "fedlake"
    root_marker = ""

    def __init__(
        self,
        url: str | None = None,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        account: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if url:
            config = ClientConfig(
                url=url, username=username, password=password, token=token, account=account
            )
        else:
            config = ClientConfig.load()
        self.client = Client(config)

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        if path.startswith("fedlake://"):
            path = path[len("fedlake://") :]
        return path.replace(":", "/", 1).strip("/")

    @staticmethod
    def _did(path: str) -> tuple[str, str]:
        scope, _, name = path.partition("/")
        if not scope or not name or "/" in name:
            raise FileNotFoundError(f"{path!r} is not scope/name")
        return scope, name

    def _entry(self, d: dict[str, Any]) -> dict[str, Any]:
        kind = d.get("did_type") or d.get("type")
        return {
            "name": f"{d['scope']}/{d['name']}",
            "size": d.get("bytes") or 0,
            "type": "file" if kind == "FILE" else "directory",
        }

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path)
        if not path:
            out = [
                {"name": s["scope"], "size": 0, "type": "directory"}
                for s in self.client.list_scopes()
            ]
        elif "/" not in path:
            out = [self._entry(d) for d in self.client.search(path, "name=*", did_type="all")]
        else:
            scope, name = self._did(path)
            info = self.info(path)
            if info["type"] == "file":
                out = [info]
            else:
                out = [self._entry(d) for d in self.client.list_content(scope, name)]
        return out if detail else [e["name"] for e in out]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        if "/" not in path:
            return {"name": path, "size": 0, "type": "directory"}
        try:
            did = self.client.get_did(*self._did(path))
        except DIDNotFound:
            raise FileNotFoundError(path) from None
        return self._entry(did) | {"adler32": did.get("adler32")}

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: Any = None,
        **kwargs: Any,
    ) -> Any:
        if mode != "rb":
            raise NotImplementedError("fedlake:// is read-only; upload with `fedlake upload`")
        return LakeFile(
            self,
            self._strip_protocol(path),
            mode,
            block_size or 4 * 1024 * 1024,
            cache_options=cache_options,
            **kwargs,
        )


class LakeFile(AbstractBufferedFile):  # type: ignore[misc]
    def _fetch_range(self, start: int, end: int) -> bytes:
        if end <= start:
            return b""
        fs: FedlakeFileSystem = self.fs
        scope, name = fs._did(self.path)
        r = fs.client.request(
            "GET", f"/files/{scope}/{name}", headers={"Range": f"bytes={start}-{end - 1}"}
        )
        return bytes(r.content)

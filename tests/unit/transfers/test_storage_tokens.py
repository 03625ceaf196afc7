"""The tokens the engine mints for storage: scopes on the URL paths, the endpoint as
audience (davs as https, default ports filled in), and the copier's choice of who needs
one."""

from __future__ import annotations

from typing import Any, cast

from fedlake.storage.base import Storage
from fedlake.transfers.copier import Copier
from fedlake.transfers.endpoints import Endpoint, Endpoints
from fedlake.transfers.storage_tokens import StorageTokens, audience


class Signer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def issue_storage(self, scope: str, audience: str, *, lifetime: int, **kw: Any) -> str:
        self.calls.append((scope, audience, {"lifetime": lifetime, **kw}))
        return f"token-{len(self.calls)}"


def test_audience() -> None:
    assert audience("davs://se.example.org/a") == "https://se.example.org:443"
    assert audience("https://se.example.org:8443/a") == "https://se.example.org:8443"
    assert audience("http://h/a") == "http://h:80"


def test_source_and_destination_scopes() -> None:
    signer = Signer()
    tokens = StorageTokens(signer, lifetime=300)
    assert tokens.source("davs://a.example:8443/pre/xfer/f%20g.bin") == "token-1"
    assert tokens.destination("davs://b.example/pre/xfer/ab/f.bin", "davs://b.example/pre/") == (
        "token-2"
    )
    (src_scope, src_aud, src_kw), (dst_scope, dst_aud, _) = signer.calls
    assert src_scope == "storage.read:/pre/xfer/f g.bin"
    assert src_aud == "https://a.example:8443"
    assert src_kw == {"lifetime": 300}
    assert dst_scope.split() == [
        "storage.read:/pre/xfer/ab/f.bin",
        "storage.modify:/pre/xfer/ab/f.bin",
        "storage.create:/pre",
    ]
    assert dst_aud == "https://b.example:443"


def test_the_copier_mints_for_token_aware_schemes_only() -> None:
    signer = Signer()
    copier = Copier(cast(Endpoints, None), tokens=StorageTokens(signer))
    davs = Endpoint("davs", "b.example", 8443, "/pre", cast(Storage, None), 1, 1)
    root = Endpoint("root", "a.example", 1094, "/x", cast(Storage, None), 1, 1)
    assert copier._tokens(root, "xfer/f", davs, "xfer/g") == (None, "token-1")
    assert signer.calls[0][0].split()[-1] == "storage.create:/pre"
    assert copier._tokens(davs, "xfer/f", root, "xfer/g") == ("token-2", None)
    assert signer.calls[1][:2] == ("storage.read:/pre/xfer/f", "https://b.example:8443")
    assert Copier(cast(Endpoints, None))._tokens(davs, "a", davs, "b") == (None, None)


def test_a_protocol_with_its_own_token_keeps_it() -> None:
    class Own:
        token = "configured"

    signer = Signer()
    copier = Copier(cast(Endpoints, None), tokens=StorageTokens(signer))
    own = Endpoint("davs", "a.example", 443, "/p", cast(Storage, Own()), 1, 1)
    other = Endpoint("https", "b.example", 443, "/q", cast(Storage, None), 1, 1)
    assert copier._tokens(own, "f", other, "g") == (None, "token-1")
    assert len(signer.calls) == 1

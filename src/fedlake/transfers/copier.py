"""Run one claimed request: stage if on tape, copy (third-party or streamed), verify.

Returns an :class:`~fedlake.catalog.transfers.Outcome`; never raises for storage errors.
A failed copy leaves no destination file: plugins write atomically, and a third-party copy
whose checksum does not match is deleted here. With :class:`StorageTokens`, calls to
token-aware storage (davs/https/http) carry a token minted for this copy
(``transfers.storage_tokens``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from datetime import timedelta

from fedlake.catalog.transfers import Claimed, Outcome
from fedlake.domain.checksums import Digest
from fedlake.domain.errors import ChecksumMismatch
from fedlake.domain.timefmt import utcnow
from fedlake.storage.backends.posix import PosixStorage, SourceReadError
from fedlake.storage.base import Stageable
from fedlake.storage.credentials import bearer
from fedlake.transfers.endpoints import Endpoint, Endpoints
from fedlake.transfers.errors import SourceError, backoff, classify
from fedlake.transfers.storage_tokens import TOKEN_SCHEMES, StorageTokens

__all__ = ["Copier"]

log = logging.getLogger("fedlake.transfers")
STAGE_POLL = 2.0
PIN_SECONDS = 900.0  # long enough for the copy; released right after it


def _tpc_pair(src: list[Endpoint], dst: list[Endpoint]) -> tuple[Endpoint, Endpoint] | None:
    for d in dst:
        if d.tpc_write is None or not d.storage.tpc_modes:
            continue
        for s in src:
            if s.tpc_read is not None and s.scheme == d.scheme and "pull" in d.storage.tpc_modes:
                return s, d
    return None


def _mints(e: Endpoint) -> bool:
    return e.scheme in TOKEN_SCHEMES and not getattr(e.storage, "token", None)


class Copier:
    def __init__(
        self,
        endpoints: Endpoints,
        *,
        stage_poll: float = STAGE_POLL,
        tokens: StorageTokens | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.stage_poll = stage_poll
        self.tokens = tokens

    def _tokens(
        self, s: Endpoint, src: str, d: Endpoint, dst: str
    ) -> tuple[str | None, str | None]:
        """The source's and the destination's token for this copy (None: none minted, for
        a plugin that sends no tokens or has one of its own configured)."""
        if self.tokens is None:
            return None, None
        source = self.tokens.source(s.url(src)) if _mints(s) else None
        dest = self.tokens.destination(d.url(dst), d.url("")) if _mints(d) else None
        return source, dest

    def run(self, c: Claimed) -> Outcome:
        started = utcnow()
        t0 = time.monotonic()
        assert c.source_rse_id is not None
        dest_path = self.endpoints.path(c.dest_rse_id, c.scope, c.name, None)
        stored = dest_path if not self.endpoints.info(c.dest_rse_id).deterministic else None

        def outcome(kind: str, **kw: object) -> Outcome:
            seconds = time.monotonic() - t0
            return Outcome.of(c, kind, started, seconds=seconds, dest_path=stored, **kw)

        try:
            srcs = self._source_endpoints(c)
            dsts = self.endpoints.endpoints(c.dest_rse_id, "write")
            src_path = self.endpoints.path(c.source_rse_id, c.scope, c.name, c.source_path)
            staged = self._staged(srcs[0], src_path)
            if not staged:
                return outcome(
                    "waiting",
                    error="staging from tape",
                    not_before=utcnow() + timedelta(seconds=self.stage_poll),
                )
            tpc = self._copy(c, srcs, dsts, src_path, dest_path)
            self._release(srcs[0], src_path)
            return outcome("done", bytes=c.bytes, tpc=tpc)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a recorded attempt
            verdict = classify(exc)
            log.info("transfer %s attempt %s failed: %s", c.id, c.attempt, verdict.message)
            kind = verdict.action
            nb = None
            if kind == "retry":
                if c.attempt >= c.max_attempts:
                    kind = "failed"
                    msg = f"{verdict.message} (gave up after {c.attempt} attempts)"
                    return outcome(kind, error=msg, recoverable=True)
                nb = utcnow() + timedelta(seconds=backoff(c.attempt))
            if kind == "exclude_source" and c.attempt >= c.max_attempts:
                kind = "failed"
            return outcome(
                kind,
                error=verdict.message,
                recoverable=verdict.recoverable,
                not_before=nb,
                mark_source_bad=verdict.mark_source_bad,
            )

    def _source_endpoints(self, c: Claimed) -> list[Endpoint]:
        assert c.source_rse_id is not None
        try:
            return self.endpoints.endpoints(c.source_rse_id, "read")
        except Exception as exc:
            raise SourceError(exc) from exc

    def _stage_token(self, src: Endpoint, url: str) -> str | None:
        """A token for staging and releasing ``url`` (``storage.stage``), when minted."""
        return self.tokens.stage(url) if self.tokens is not None and _mints(src) else None

    def _staged(self, src: Endpoint, path: str) -> bool:
        storage = src.storage
        if not isinstance(storage, Stageable):
            return True
        url = src.url(path)
        try:
            with bearer(self._stage_token(src, url)):
                if storage.is_online(url):
                    return True
                storage.stage(url, pin_seconds=PIN_SECONDS)
                return storage.is_online(url)
        except Exception as exc:
            raise SourceError(exc) from exc

    def _release(self, src: Endpoint, path: str) -> None:
        """Drop the staging pin once copied, so the tape buffer can evict the file."""
        if isinstance(src.storage, Stageable):
            url = src.url(path)
            try:
                with bearer(self._stage_token(src, url)):
                    src.storage.release(url)
            except Exception:  # the pin expires by itself
                log.warning("releasing the pin of %s failed", url, exc_info=True)

    def _copy(
        self,
        c: Claimed,
        srcs: list[Endpoint],
        dsts: list[Endpoint],
        src_path: str,
        dest_path: str,
    ) -> bool:
        expected = Digest(c.bytes, c.adler32 or "", c.md5)
        pair = _tpc_pair(srcs, dsts)
        if pair is not None:
            s, d = pair
            src_token, dest_token = self._tokens(s, src_path, d, dest_path)
            with bearer(src_token):
                self._verify_source(c, s, src_path)
            with bearer(dest_token):
                d.storage.third_party_copy(
                    s.url(src_path),
                    d.url(dest_path),
                    overwrite=True,
                    source_token=src_token,
                    dest_token=dest_token,
                )
                self._verify_dest(c, d, dest_path)
            return True
        s, d = srcs[0], dsts[0]
        src_token, dest_token = self._tokens(s, src_path, d, dest_path)
        with bearer(src_token):
            self._verify_source(c, s, src_path)
        src_url = s.url(src_path)
        if isinstance(s.storage, PosixStorage) and isinstance(d.storage, PosixStorage):
            # both on this host: the kernel copies, the stored copy is verified in place
            try:
                d.storage.copy_local(src_url, d.url(dest_path), expected=expected, overwrite=True)
            except SourceReadError as exc:
                raise SourceError(exc.cause) from exc
            return False

        def chunks() -> Iterator[bytes]:
            try:
                yield from s.storage.read(src_url)
            except Exception as exc:
                raise SourceError(exc) from exc

        # the plugin verifies bytes and checksums before the copy becomes visible; a token
        # is in force for the whole write, so only one side may need one (the usual case:
        # both sides speaking tokens pair up for a third-party copy above)
        with bearer(dest_token or src_token):
            d.storage.write(d.url(dest_path), chunks(), expected=expected, overwrite=True)
        return False

    def _verify_source(self, c: Claimed, s: Endpoint, path: str) -> None:
        if not c.verify_source:
            return
        algorithm, want = ("adler32", c.adler32) if c.adler32 else ("md5", c.md5)
        if not want:
            return
        try:
            got = s.storage.checksum(s.url(path), algorithm)
        except Exception as exc:
            raise SourceError(exc) from exc
        if got != want:
            raise SourceError(
                ChecksumMismatch(f"source {algorithm} is {got}, the catalogue says {want}")
            )

    def _verify_dest(self, c: Claimed, d: Endpoint, path: str) -> None:
        url = d.url(path)
        st = d.storage.stat(url)
        problem = None
        if st.size != c.bytes:
            problem = f"destination has {st.size} bytes, the catalogue says {c.bytes}"
        elif c.adler32 or c.md5:
            algorithm, want = ("adler32", c.adler32) if c.adler32 else ("md5", c.md5)
            got = d.storage.checksum(url, algorithm)
            if got != want:
                problem = f"destination {algorithm} is {got}, the catalogue says {want}"
        if problem is not None:
            with contextlib.suppress(FileNotFoundError):
                d.storage.delete(url)
            raise ChecksumMismatch(problem)

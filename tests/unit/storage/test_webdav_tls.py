"""The WebDAV plugin's TLS context: made once and shared by every thread's client."""

from __future__ import annotations

import ssl
import threading

from fedlake.storage.backends.webdav import WebDAVStorage


def test_one_verifying_context_for_every_thread() -> None:
    storage = WebDAVStorage()  # verify=True: the CAs httpx trusts by default
    seen: list[object] = []

    def use() -> None:
        seen.append(storage.client._transport._pool._ssl_context)  # type: ignore[attr-defined]

    threads = [threading.Thread(target=use) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    storage.close()
    assert len(seen) == 4 and len({id(c) for c in seen}) == 1
    context = seen[0]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_verify_false_turns_checks_off() -> None:
    storage = WebDAVStorage(verify=False)
    context = storage.client._transport._pool._ssl_context  # type: ignore[attr-defined]
    storage.close()
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_NONE

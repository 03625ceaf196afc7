"""Metalink 4 (RFC 5854) rendering of replica records, as ``rucio download`` parses it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any
from xml.sax.saxutils import escape, quoteattr

__all__ = ["MEDIA_TYPE", "metalink"]

MEDIA_TYPE = "application/metalink4+xml"


def metalink(records: Iterable[dict[str, Any]]) -> Iterator[str]:
    yield '<?xml version="1.0" encoding="UTF-8"?>\n'
    yield '<metalink xmlns="urn:ietf:params:xml:ns:metalink">\n'
    for rec in records:
        did = f"{rec['scope']}:{rec['name']}"
        parts = [f" <file name={quoteattr(rec['name'])}>\n"]
        if rec.get("parents"):
            parts.append("  <parents>")
            parts.extend(f"<did>{escape(p)}</did>" for p in rec["parents"])
            parts.append("</parents>\n")
        parts.append(f"  <identity>{escape(did)}</identity>\n")
        if rec.get("adler32"):
            parts.append(f'  <hash type="adler32">{rec["adler32"]}</hash>\n')
        if rec.get("md5"):
            parts.append(f'  <hash type="md5">{rec["md5"]}</hash>\n')
        if rec.get("bytes") is not None:
            parts.append(f"  <size>{int(rec['bytes'])}</size>\n")
        parts.append(f'  <glfn name="/fedlake/{escape(did)}"></glfn>\n')
        for pfn, meta in rec["pfns"].items():
            parts.append(
                f"  <url location={quoteattr(meta['rse'])} domain={quoteattr(meta['domain'])} "
                f'priority="{meta["priority"]}" client_extract="false">{escape(pfn)}</url>\n'
            )
        parts.append(" </file>\n")
        yield "".join(parts)
    yield "</metalink>\n"

"""The storage-element server (``fedlake se``): a POSIX directory served over HTTP/WebDAV
with the lake's tokens, HTTP third-party copy and a read-through cache (DESIGN.md ``se/``)."""

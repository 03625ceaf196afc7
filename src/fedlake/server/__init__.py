"""The ASGI application: Rucio-compatible REST API plus fedlake's own endpoints."""

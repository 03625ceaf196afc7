"""Python client of a fedlake server. Imports only ``fedlake.domain`` (never the catalogue)."""

from fedlake.client.http import Client, ClientConfig

__all__ = ["Client", "ClientConfig"]

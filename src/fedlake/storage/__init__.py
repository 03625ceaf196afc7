"""Storage access: one interface, protocol plugins chosen by URL scheme (depends only on domain)."""

from fedlake.storage.base import StatResult, Storage
from fedlake.storage.registry import get_storage, known_schemes, register

__all__ = ["StatResult", "Storage", "get_storage", "known_schemes", "register"]

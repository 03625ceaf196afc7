"""Identifiers, enums, value types, validation and the error hierarchy (stdlib only)."""

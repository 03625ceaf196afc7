"""The ``fedlake`` command."""

"""Parsers for RSE expressions and DID metadata filters."""

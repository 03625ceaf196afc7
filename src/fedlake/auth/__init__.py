"""Identity: password hashing, token issuing and validation, authorization policy."""

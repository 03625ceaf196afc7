"""One module per noun: validate, authorize, open the transaction, call the logic.

This is the only way into the core for every entry point (server, CLI, daemons).
"""

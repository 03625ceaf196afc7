"""One router per noun; each handler parses the request and calls a service."""

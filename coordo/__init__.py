"""Coordo launcher: one binary, `all` target for one process, one target per component."""

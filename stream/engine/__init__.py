"""The sans-I/O streaming engine: audio in, model jobs out, results in, events out (no torch, no sockets)."""

"""The `emostream` command line: shared options, the commands, and `listen` (microphone in the terminal)."""

"""The streaming analyzer: configuration, events, smoothing, decisions, offline analysis, CLI."""

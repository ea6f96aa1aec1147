"""emostream's analysis and its shells, one sub-package per layer, lowest first (each imports only those above it here).

- decision: the fear/disgust decision layer (quality gate, cues, focus crop, fusion, profiles, rules)
- engine: the sans-I/O streaming analyzer (audio in, jobs out, results in, events out)
- protocol: the wire formats, sans-I/O (native WebSocket protocol, Twilio Media Streams, μ-law)
- offline: whole files (analyze, decoding, plots, evaluation, labelled data)
- client: the Python client of /ws/stream (`Client`, `stream_file`); never imports the server
- server: the live server (scheduler, sessions, recordings, sinks, HTTP and WebSocket endpoints)
- cluster: the live server on Ray Serve (optional extra: Scorer, Ingress, SessionHub deployments)
- cli: the `emostream` command (shared options, commands, `listen`)

Below them: `models` (the model, the Scorer protocol, the error hierarchy) and `vad`.
docs/architecture.md draws the layers and the data path.
"""

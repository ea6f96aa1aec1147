"""The live server: one batching scheduler, many sessions, recordings, sinks, HTTP and WebSocket endpoints."""

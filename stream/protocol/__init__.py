"""Wire formats, sans-I/O: the native `/ws/stream` protocol, Twilio Media Streams, and G.711 μ-law."""

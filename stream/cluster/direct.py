"""Ingress replicas that accept WebSockets themselves, on one port shared with SO_REUSEPORT.

Serve's HTTP proxy is one Python process per node, and every WebSocket message passes through
it: at 0.1 s audio messages it carries ~140 streams per core (docs/scaling.md). With
`--ingress-port`, each ingress replica also listens on that port (the kernel spreads new
connections over the replicas of a node), so streams reach the replica's event loop directly.
Serve still places, health-checks and restarts the replicas and batches the model; the proxy
port keeps serving everything as well, and both take the same TLS certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import uvicorn


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket that other processes may bind to the same port (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class DirectListener:
    """uvicorn serving an already-started ASGI app on a shared port, on the replica's event loop."""

    def __init__(self, app, host: str, port: int, max_message_bytes: int, ssl_certfile=None, ssl_keyfile=None):
        """Serve `app` (its lifespan already run by Serve) on host:port, with TLS when given a certificate."""
        config = uvicorn.Config(
            app, ws="websockets", ws_max_size=max_message_bytes, lifespan="off", log_level="warning",
            access_log=False, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile,
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self.socket = reuse_port_socket(host, port)
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        """Begin accepting connections."""
        self.task = asyncio.get_running_loop().create_task(self.server.serve(sockets=[self.socket]))

    async def stop(self) -> None:
        """Stop accepting, close the connections, free the port."""
        self.server.should_exit = True
        if self.task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.task, 30)
        self.socket.close()

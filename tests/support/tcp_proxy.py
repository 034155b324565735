"""A loopback TCP proxy that can refuse connections, for "Slack is unreachable" faults.

Put it in front of a server (`TcpProxy(port).start()`, then talk to `proxy.port`). `refuse()`
closes the listening socket, so connecting fails with ECONNREFUSED as when nothing listens;
`accept()` listens on the same port again. Connections already open are left alone.
"""

from __future__ import annotations

import contextlib
import socket
import threading

CHUNK = 65536


class TcpProxy:
    """Forwards every connection to 127.0.0.1:`target_port`, unless told to refuse."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()

    def start(self) -> TcpProxy:
        self.accept()
        return self

    def stop(self) -> None:
        self.refuse()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def refusing(self) -> bool:
        return self._listener is None

    def accept(self) -> None:
        """Listen (again, on the same port once one was chosen) and forward connections."""
        with self._lock:
            if self._listener is not None:
                return
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(64)
            self.port = listener.getsockname()[1]
            self._listener = listener
        threading.Thread(target=self._serve, args=(listener,), daemon=True,
                         name=f"tcp-proxy-{self.port}").start()

    def refuse(self) -> None:
        """Stop listening: new connections are refused until `accept()`."""
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone may not.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    def _serve(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # refuse() closed the listener
            threading.Thread(target=self._forward, args=(client,), daemon=True).start()

    def _forward(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=30)
        except OSError:
            client.close()
            return
        threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
        _pipe(client, upstream)


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes one way until either side closes, then close both."""
    try:
        while data := source.recv(CHUNK):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for side in (source, sink):
            with contextlib.suppress(OSError):
                side.shutdown(socket.SHUT_RDWR)
            side.close()

"""A loopback TCP relay that can freeze: it stops moving bytes while every TCP connection stays
open, as a dropped NAT mapping, a Wi-Fi roam or a stuck middlebox does. New connections made
while frozen are accepted and then hear nothing. Resumed, it moves bytes again for connections
made after the freeze (the frozen ones stay silent, like a mapping that is gone for good)."""

from __future__ import annotations

import socket
import threading
import time


class FreezableRelay:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(32)
        self.port = self.listener.getsockname()[1]
        self._frozen = threading.Event()
        self._generation = 0          # connections from an older generation stay silent
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self) -> None:
        self._generation += 1
        self._frozen.set()

    def resume(self) -> None:
        self._frozen.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self._sockets.append(client)
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        while self._frozen.is_set():          # accepted while frozen: silent until the thaw
            time.sleep(0.05)
        generation = self._generation
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        self._sockets.append(upstream)
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(a, b, generation), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, generation: int) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                return
            if not data:
                return
            if self._generation != generation:
                continue                      # frozen: swallow, never answer, never close
            try:
                dst.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass

"""A TCP proxy in front of a server that can slow, stall, cut or refuse connections.

The proxy runs its own asyncio loop in a daemon thread, so sync tests and async
tests on any event loop scope drive it the same way. Every method is thread-safe
and has taken effect when it returns.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["TcpProxy"]

_CHUNK = 64 * 1024
#: Seconds a control call waits for the proxy thread.
_CONTROL_TIMEOUT = 10.0


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream
        self.tasks: list[asyncio.Task[None]] = []

    def abort(self, *, reset: bool) -> None:
        if reset:
            sock = self.client.get_extra_info("socket")
            if sock is not None:
                # SO_LINGER 0: close() sends RST instead of FIN, like a crashed peer.
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.client.transport.abort()
        self.upstream.transport.abort()
        for task in self.tasks:
            task.cancel()


class TcpProxy:
    """Forward ``127.0.0.1:<port>`` to ``target_url``'s host and port.

    Faults, each until :meth:`restore`:

    * :meth:`latency` - a one-way delay: every chunk, in each direction, is forwarded
      ``seconds`` after it arrived, so a request/response round trip is ``2 * seconds``
      slower (order is kept; chunks are not delayed behind one another);
    * :meth:`blackhole` - connections are accepted and held; nothing is forwarded in
      either direction, and what arrives is buffered and delivered on restore, as TCP
      retransmission would after a partition heals;
    * :meth:`refuse` - the listening socket is closed, so new connects are refused
      (open connections stay up);

    and three one-shot faults: :meth:`reset`, which resets every open connection (RST);
    :meth:`cut_next_reply`, which lets a request reach the server and then resets the
    connection instead of delivering the reply (a cut at the worst moment); and
    :meth:`hold_next_request`, which delivers the next request late, after its client gave
    up on it, as a congested network or a proxy can (it may then run after a retry).
    """

    def __init__(self, target_url: str, *, host: str = "127.0.0.1", port: int = 0) -> None:
        target = urlsplit(target_url)
        if target.hostname is None:
            raise ValueError(f"no host in {target_url!r}")
        self.target_url = target_url
        self.target_host = target.hostname
        self.target_port = target.port or 6379
        self.host = host
        self._port = port
        self._latency = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._flowing: asyncio.Event | None = None
        self._links: set[_Link] = set()
        self._cut_next_reply = False
        self._hold_next = 0.0
        self.replies_cut = 0

    def __repr__(self) -> str:
        return f"<TcpProxy {self.host}:{self._port} -> {self.target_host}:{self.target_port}>"

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("the proxy has not been started yet")
        return self._port

    @property
    def url(self) -> str:
        """``target_url`` with the proxy's host and port (credentials, db and query kept)."""
        target = urlsplit(self.target_url)
        userinfo = target.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@" if userinfo else ""
        return urlunsplit(target._replace(netloc=f"{netloc}{self.host}:{self.port}"))

    @property
    def connections(self) -> int:
        """Client connections open through the proxy right now."""
        return len(self._links)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> TcpProxy:
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name=f"agentmem-proxy-{id(self):x}", daemon=True)
        self._thread.start()
        self._call(self._start())
        return self

    def _run(self) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    def stop(self) -> None:
        """Close the listener and every connection, and end the thread."""
        if self._thread is None or self._loop is None:
            return
        with contextlib.suppress(RuntimeError, concurrent.futures.TimeoutError):
            self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=_CONTROL_TIMEOUT)
        self._thread = None

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._loop is None or self._thread is None:
            coro.close()
            raise RuntimeError("the proxy is not running")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        future.result(timeout=_CONTROL_TIMEOUT)

    # -- faults ----------------------------------------------------------------------------

    def latency(self, seconds: float) -> None:
        """Delay every chunk by ``seconds`` each way (0 turns it off)."""
        if seconds < 0:
            raise ValueError("latency must be >= 0 seconds")
        self._call(self._set_latency(seconds))

    def blackhole(self) -> None:
        """Accept and hold connections; forward nothing until :meth:`restore`."""
        self._call(self._set_flowing(False))

    def reset(self) -> None:
        """Reset (RST) every open connection now; new connections work as before."""
        self._call(self._reset_all())

    def cut_next_reply(self) -> None:
        """Drop the next reply the server sends and reset that client connection (RST).

        The request was received and applied by the server; the client never learns it.
        One-shot: later replies flow again.
        """
        self._call(self._arm_cut())

    def hold_next_request(self, seconds: float) -> None:
        """Deliver the next chunk a client sends ``seconds`` late, and the rest of that
        connection's bytes behind it, even if the client has closed the connection meanwhile
        (the server then runs the request, and its reply goes nowhere). One-shot."""
        if seconds <= 0:
            raise ValueError("the hold must be > 0 seconds")
        self._call(self._arm_hold(seconds))

    def refuse(self) -> None:
        """Close the listening socket: connects are refused until :meth:`restore`."""
        self._call(self._close_listener())

    def restore(self) -> None:
        """Undo latency, blackhole and refuse; buffered data is delivered now."""
        self._call(self._restore())

    # -- inside the proxy's loop -----------------------------------------------------------

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        await self._open_listener()

    async def _open_listener(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._on_client, self.host, self._port, reuse_address=True)
        self._port = int(self._server.sockets[0].getsockname()[1])

    async def _close_listener(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            # close() closes the listening socket at once; wait_closed() would also
            # wait for the open connections on Python 3.12+.
            server.close()

    async def _set_latency(self, seconds: float) -> None:
        self._latency = seconds

    async def _set_flowing(self, flowing: bool) -> None:
        assert self._flowing is not None
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _arm_cut(self) -> None:
        self._cut_next_reply = True

    async def _arm_hold(self, seconds: float) -> None:
        self._hold_next = seconds

    async def _reset_all(self) -> None:
        links, self._links = self._links, set()
        for link in links:
            link.abort(reset=True)
        await asyncio.gather(*(t for link in links for t in link.tasks), return_exceptions=True)

    async def _restore(self) -> None:
        self._latency = 0.0
        await self._set_flowing(True)
        await self._open_listener()

    async def _shutdown(self) -> None:
        await self._close_listener()
        links, self._links = self._links, set()
        for link in links:
            link.abort(reset=False)
        await asyncio.gather(*(t for link in links for t in link.tasks), return_exceptions=True)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()  # the server is down: the client sees the connection drop
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        link.tasks = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer, link=link)),
        ]
        await asyncio.gather(*link.tasks, return_exceptions=True)
        self._links.discard(link)
        writer.transport.abort()
        up_writer.transport.abort()

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, link: _Link | None = None
    ) -> None:
        """Copy ``source`` to ``sink`` through a queue, so a stalled sink never stops reading.

        ``link`` is given for the server-to-client direction, where replies can be cut.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

        async def read() -> None:
            try:
                while chunk := await source.read(_CHUNK):
                    due = loop.time() + self._latency
                    if link is None and self._hold_next:  # client to server: a held request
                        due, self._hold_next = due + self._hold_next, 0.0
                    queue.put_nowait((due, chunk))
            except OSError:
                pass
            queue.put_nowait(None)

        reader = asyncio.create_task(read())
        assert self._flowing is not None
        try:
            while (item := await queue.get()) is not None:
                due, chunk = item
                await self._flowing.wait()
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if link is not None and self._cut_next_reply:
                    self._cut_next_reply = False
                    self.replies_cut += 1
                    self._links.discard(link)
                    link.abort(reset=True)
                    return
                sink.write(chunk)
                await sink.drain()
            # End of stream: pass the half-close on, then let the other side finish.
            if sink.can_write_eof():
                sink.write_eof()
        except OSError:
            pass
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

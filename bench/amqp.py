"""Raw pika pieces for the benchmark: a pipelined-confirm publisher and an inbox consumer.

Nothing here is the hub's code. :func:`publish_all` is "pika alone" for the broker
ceiling; :class:`Consumer` runs in a child process (so the benchmark's own publishing and
bookkeeping do not share a GIL with it), acknowledges every message and records when each
arrived (``time.monotonic()``, one clock for every process on Linux) under a key: the
``x-vdx-document-id`` header of a hub delivery, or the AMQP message id.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Sequence

import pika
from pika.adapters.select_connection import SelectConnection

from vdx.broker.wire import DOCUMENT_ID

CONFIRM_WINDOW = 500


def declare_quorum_queue(url: str, queue: str) -> None:
    """A durable quorum queue, as the hub's queues are."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        connection.channel().queue_declare(queue, durable=True,
                                           arguments={"x-queue-type": "quorum"})
    finally:
        connection.close()


def publish_all(url: str, routing_key: str, bodies: Sequence[bytes], *,
                window: int = CONFIRM_WINDOW, timeout: float = 300.0) -> tuple[float, float]:
    """Publish ``bodies`` (persistent) to the default exchange with at most ``window``
    unconfirmed; return (monotonic time of the first publish, of the last confirm)."""
    state = {"sent": 0, "first": 0.0, "last": 0.0, "error": None}
    unconfirmed: set[int] = set()
    params = pika.URLParameters(url)

    def pump(channel) -> None:
        while state["sent"] < len(bodies) and len(unconfirmed) < window:
            i = state["sent"]
            if i == 0:
                state["first"] = time.monotonic()
            channel.basic_publish("", routing_key, bodies[i], pika.BasicProperties(
                delivery_mode=2, message_id=f"m{i}"))
            state["sent"] += 1
            unconfirmed.add(state["sent"])  # delivery tags count from 1

    def on_confirm(frame) -> None:
        method = frame.method
        if not isinstance(method, pika.spec.Basic.Ack):
            state["error"] = "publisher nack"
        tag = method.delivery_tag
        if method.multiple:
            unconfirmed.difference_update([t for t in unconfirmed if t <= tag])
        else:
            unconfirmed.discard(tag)
        if state["sent"] >= len(bodies) and not unconfirmed:
            state["last"] = time.monotonic()
            connection.close()
        else:
            pump(channel_box[0])

    channel_box: list = []

    def on_channel(channel) -> None:
        channel_box.append(channel)
        channel.confirm_delivery(on_confirm, callback=lambda _f: pump(channel))

    connection = SelectConnection(
        params, on_open_callback=lambda c: c.channel(on_open_callback=on_channel),
        on_open_error_callback=lambda _c, e: (state.update(error=str(e)),
                                              connection.ioloop.stop()),
        on_close_callback=lambda _c, _r: connection.ioloop.stop())
    deadline = connection.ioloop.call_later(timeout, lambda: (
        state.update(error="timed out"), connection.close()))
    connection.ioloop.start()
    connection.ioloop.remove_timeout(deadline)
    if state["error"] or unconfirmed or state["sent"] < len(bodies):
        raise RuntimeError(f"publishing failed: {state['error']} ({state['sent']} sent, "
                           f"{len(unconfirmed)} unconfirmed of {len(bodies)})")
    return state["first"], state["last"]


class Consumer:
    """A child process consuming ``queues``; see the module docstring.

    ``count`` is live; :meth:`arrivals` returns {key: monotonic arrival time} so far.
    """

    def __init__(self, url: str, queues: Sequence[str], *, key: str = "document",
                 prefetch: int = 500) -> None:
        ctx = mp.get_context("spawn")
        self._count = ctx.Value("l", 0, lock=False)
        self._requests, remote = ctx.Pipe()
        self._ready = ctx.Event()
        self.process = ctx.Process(target=_consume, name="bench-consumer", daemon=True,
                                   args=(url, tuple(queues), key, prefetch, self._count,
                                         remote, self._ready))
        self.process.start()
        if not self._ready.wait(30):
            self.stop()
            raise RuntimeError("the consumer did not connect")

    @property
    def count(self) -> int:
        return self._count.value

    def wait_for(self, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._count.value < n:
            if time.monotonic() > deadline or not self.process.is_alive():
                return False
            time.sleep(0.002)
        return True

    def arrivals(self) -> dict[str, float]:
        self._requests.send("dump")
        if not self._requests.poll(30):
            raise RuntimeError("the consumer did not answer")
        return self._requests.recv()

    def stop(self) -> None:
        if self.process.is_alive():
            try:
                self._requests.send("stop")
            except OSError:
                pass
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


def _consume(url: str, queues: tuple[str, ...], key: str, prefetch: int, count,
             requests, ready) -> None:
    import logging
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    logging.getLogger("pika").setLevel(logging.CRITICAL)  # a lost broker: the parent says
    arrivals: dict[str, float] = {}

    def on_message(channel, method, props, _body) -> None:
        now = time.monotonic()
        if key == "document":
            name = (props.headers or {}).get(DOCUMENT_ID)
            if name is None:  # not a delivery (a receipt): not what we time
                channel.basic_ack(method.delivery_tag)
                return
        else:
            name = props.message_id
        arrivals[str(name)] = now
        count.value += 1
        channel.basic_ack(method.delivery_tag)

    def on_channel(channel) -> None:
        def consume(_frame) -> None:
            for queue in queues:
                channel.basic_consume(queue, on_message)
            ready.set()
        channel.basic_qos(prefetch_count=prefetch, callback=consume)

    def poll() -> None:
        while requests.poll():
            what = requests.recv()
            if what == "dump":
                requests.send(dict(arrivals))
            elif what == "stop":
                connection.close()
                return
        connection.ioloop.call_later(0.05, poll)

    connection = SelectConnection(
        pika.URLParameters(url),
        on_open_callback=lambda c: (c.channel(on_open_callback=on_channel), poll()),
        on_close_callback=lambda _c, _r: connection.ioloop.stop())
    connection.ioloop.start()

"""A large delivery's frames are given back to the system once pika joined them into
the body (``vdx.malloc.trim``), no broker needed."""

from __future__ import annotations

import pytest
from pika import spec

from vdx import malloc
from vdx.broker.channel import TRIM_AFTER, AsyncChannel


def _body(size: int) -> bytes:
    return bytes(range(256)) * (size // 256) + b"z" * (size % 256)


@pytest.mark.parametrize("size", [10, TRIM_AFTER])
def test_the_frames_of_a_large_delivery_are_given_back(size: int,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    trimmed, received = [], []
    monkeypatch.setattr(malloc, "trim", lambda: trimmed.append(True))
    channel = AsyncChannel("amqp://guest:guest@127.0.0.1:1/%2F", ("q",), 1,
                           on_ready=lambda: None, on_message=received.append,
                           on_confirm=lambda tokens, ok: None, on_returned=lambda m: None,
                           on_closed=lambda reason: None)
    body = _body(size)
    try:
        channel._delivered("q", 0, None, spec.Basic.Deliver(delivery_tag=7, routing_key="k"),
                           spec.BasicProperties(user_id="u", message_id="m"), body)
    finally:
        channel._ioloop.close()
    assert [(m.tag, m.body, m.user_id) for m in received] == [(7, body, "u")]
    assert trimmed == ([True] if size >= TRIM_AFTER else [])

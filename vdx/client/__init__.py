"""The Python SDK for agency software: :class:`NodeClient` sends signed packages and
receives verified deliveries over the node's own broker account."""

from vdx.client.node import Delivery, NodeClient, RefusedDelivery

__all__ = ["Delivery", "NodeClient", "RefusedDelivery"]

"""RabbitMQ: the wire contract between the hub and the nodes (``wire``: names, message
types, headers, every message's builder and reader), the one pika connection (``channel``:
pika is imported there and nowhere else), the link every program but the hub worker runs
on (``link``: reconnection with backoff over a list of broker addresses, publisher
confirms), and provisioning through the management API (``provision``)."""

"""Prometheus metrics of a hub worker (``vdx hub run --metrics-port``).

Labels never carry document content: outcome and error code only.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

DOCUMENTS = Counter("vdx_documents_total", "Submitted packages by outcome and error code",
                    ["outcome", "code"])
PIPELINE_SECONDS = Histogram(
    "vdx_pipeline_seconds", "Time to admit one package (parse, schema, signature, authorise)",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
BATCH_SECONDS = Histogram("vdx_batch_seconds", "Time to journal and acknowledge one batch")
PENDING = Gauge("vdx_deliveries_pending", "Publications awaiting the broker's confirm")
RETURNED = Counter("vdx_returned_total", "Publications the broker could not route")


def serve(port: int) -> None:
    start_http_server(port, addr="127.0.0.1")

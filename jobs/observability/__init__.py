"""What the queue is doing: statistics, Prometheus metrics and the log format.

Owns the statistics of ``GET /api/stats``, the dashboard and the metric gauges
(``stats``, read-only queries that stay cheap at millions of rows), the metric
counters the lifecycle records and the ``/metrics`` page (``metrics``), and the
JSON log formatter (``log``).

Sits just above ``jobs.models``: it reads jobs, never changes them, and must not
import ``jobs.lifecycle``, the task registry, or anything above them.
"""

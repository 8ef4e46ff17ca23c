"""The worker: ``manage.py runworker``'s supervisor loop and the processes it runs jobs in.

Owns the loop (``loop.Worker``: claim, hand out, heartbeat, recover, shut
down), the executor pool (``executor``: child processes that run task code
through ``jobs.runner``; ``child``: what runs inside one), the wait through a
database outage (``db_retry``), the forkserver's start-up module (``boot``) and
the database settings of worker processes (``connections``). It wakes on
``jobs.notify.Listener``.

It must not import ``jobs.api``, ``jobs.admin`` or ``jobs.backends``. This
``__init__`` imports nothing: every executor child imports this package before
Django is set up in it.
"""

"""Management commands: ``runworker``, ``serve``, ``purgejobs``, ``bootstrap``.

Entry points at the top of the layers: each parses its options and calls the
layer that does the work (``jobs.worker``, ``jobs.retention``, ...). Nothing in
``jobs`` imports them.
"""

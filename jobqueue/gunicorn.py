"""gunicorn settings: ``gunicorn -c python:jobqueue.gunicorn jobqueue.wsgi:application``.

``manage.py serve`` (and so ``make run``) uses them. Threaded workers keep a
client's connection open between its requests (gunicorn's default sync workers
close it after every response, so each request pays a new TCP connection), and
each thread keeps its database connection (``DJANGO_CONN_MAX_AGE``). Command-line
flags override these; ``WEB_CONCURRENCY`` sets the number of processes, as in
gunicorn itself.
"""

import os

worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
keepalive = 5  # seconds an idle client connection stays open
# No control socket: its default path (~/.gunicorn/gunicorn.ctl) is one per user, so a second
# instance on the host would take it over from the first; `serve` manages the processes.
control_socket_disable = True
# Trust no proxy's X-Forwarded-Proto here, not even from loopback (gunicorn's default):
# whether a request came over HTTPS is Django's to say, with DJANGO_SECURE_PROXY_SSL_HEADER.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "")

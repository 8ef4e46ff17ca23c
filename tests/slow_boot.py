"""A task module that takes seconds to import: a process that loads it (a worker, a web
worker) is still booting for that long."""

import time

time.sleep(3)

"""This project's settings less ``REST_FRAMEWORK``: Django REST framework's own defaults, as in a
project that installs the jobs app and never configured DRF (session and Basic authentication,
``AllowAny``, no filters, no pages, DRF's exception handler)."""

from jobqueue.settings import *  # noqa: F403

del REST_FRAMEWORK  # noqa: F821

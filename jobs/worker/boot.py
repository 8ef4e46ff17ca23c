"""Imported by the executor forkserver so that every child starts with Django loaded."""

import os

import django

if os.environ.get("DJANGO_SETTINGS_MODULE"):
    django.setup()

"""The built-in tasks, one module each, named after the task."""

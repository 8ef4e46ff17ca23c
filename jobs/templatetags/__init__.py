"""The job admin's template tag (``cheap_date_hierarchy``): part of ``jobs.admin``'s
changelist, here because Django looks for template tags in this package."""

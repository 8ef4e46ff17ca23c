"""Who may do what through the API: Django model permissions, per viewset action.

``ModelPermissions`` is the API's default (``JOBS_API_PERMISSION_CLASSES``, see ``defaults.py``),
so every new endpoint is closed to anonymous callers and needs a model permission:

- ``view_<model>`` to read (``list``, ``retrieve``, any GET/HEAD/OPTIONS),
- ``add_<model>`` to create,
- ``change_<model>`` for updates and for every other action that writes
  (``status``, ``run``, ``cancel``, ``retry``, ...),
- ``delete_<model>`` to delete.

A viewset may name the permission of an action explicitly with
``action_permissions = {"stats": "view"}``, and the model whose permissions apply
with ``permission_model`` (the workflows take the jobs'). A view without a queryset (so
without a model) must say what it needs in ``required_permissions`` (a list
of ``"app_label.codename"``; an empty list means any authenticated user);
otherwise only superusers pass, so a forgotten declaration fails closed.
"""

import logging
from typing import TYPE_CHECKING, Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

if TYPE_CHECKING:
    from rest_framework.views import APIView

logger = logging.getLogger(__name__)

ACTION_VERBS = {
    "list": "view",
    "retrieve": "view",
    "metadata": "view",
    "create": "add",
    "update": "change",
    "partial_update": "change",
    "destroy": "delete",
}


def required_verb(request: Request, view: "APIView") -> str:
    """Return ``view``, ``add``, ``change`` or ``delete``: what this request does to the model."""
    action = getattr(view, "action", None)
    declared = getattr(view, "action_permissions", {})
    if action in declared:
        return declared[action]
    if action in ACTION_VERBS:
        return ACTION_VERBS[action]
    if request.method in SAFE_METHODS:
        return "view"
    if request.method == "DELETE":
        return "delete"
    # POST and PATCH on custom actions, and anything unforeseen, changes the object.
    return "change"


def _model(view: "APIView") -> Any:
    if (model := getattr(view, "permission_model", None)) is not None:
        return model  # the model whose permissions apply (a workflow: its jobs')
    queryset = getattr(view, "queryset", None)
    if queryset is None and hasattr(view, "get_queryset"):
        try:
            queryset = view.get_queryset()
        except AssertionError:  # GenericAPIView without a queryset
            queryset = None
    return None if queryset is None else queryset.model


class ModelPermissions(BasePermission):
    """Allow a request when the user holds the model permission its action needs."""

    message = "You do not have permission to perform this action."

    def has_permission(self, request: Request, view: "APIView") -> bool:
        user = request.user
        if not user or not user.is_authenticated:
            return False
        model = _model(view)
        if model is None:
            return self._declared(user, view)
        opts = model._meta
        perm = f"{opts.app_label}.{required_verb(request, view)}_{opts.model_name}"
        return user.has_perm(perm)

    def _declared(self, user: Any, view: "APIView") -> bool:
        perms = getattr(view, "required_permissions", None)
        if perms is None:
            logger.warning(
                "view=%s declares neither a queryset nor required_permissions: superusers only",
                type(view).__name__,
            )
            return bool(user.is_superuser)
        return user.has_perms(list(perms))

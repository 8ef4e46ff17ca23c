"""Rate limits for API writes, per user, from ``JOBS_WRITE_RATE``."""

from typing import TYPE_CHECKING

from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.throttling import UserRateThrottle

from jobs.conf import conf

if TYPE_CHECKING:
    from rest_framework.views import APIView


class WriteRateThrottle(UserRateThrottle):
    """Limit each user's unsafe requests (POST, PATCH, PUT, DELETE); reads are free."""

    scope = "writes"

    def __init__(self) -> None:
        # DRF reads rates once at import; reading per request lets settings change.
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)

    def get_rate(self) -> str | None:
        return conf.WRITE_RATE

    def allow_request(self, request: Request, view: "APIView") -> bool:
        if request.method in SAFE_METHODS:
            return True
        return super().allow_request(request, view)

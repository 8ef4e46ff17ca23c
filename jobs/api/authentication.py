"""HTTP Basic authentication that refuses to work over plain HTTP."""

from typing import Any

from rest_framework.authentication import BasicAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request


class TLSBasicAuthentication(BasicAuthentication):
    """Accept ``Authorization: Basic`` only on HTTPS requests (``request.is_secure()``).

    Behind a TLS-terminating proxy, set ``DJANGO_SECURE_PROXY_SSL_HEADER`` so Django
    can tell. Over plain HTTP the password has already crossed the network in
    clear text: the request is refused, so the client learns to stop.
    """

    def authenticate(self, request: Request) -> Any:
        header = get_authorization_header(request).split()
        if header and header[0].lower() == b"basic" and not request.is_secure():
            raise AuthenticationFailed("HTTP Basic authentication is only accepted over HTTPS.")
        return super().authenticate(request)

"""The built-in ``send_email`` task: one message through Django's email framework.

The payload is checked when the job is created. The message goes through the
default mailer (``MAILERS["default"]``), so SMTP, the console or any backend
from settings works. Refused recipients or sender, or a header that cannot be
encoded, fail the job at once; other errors (a server that is down, a dropped
connection) are retried.
"""

import smtplib
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from rest_framework import serializers

from jobs.exceptions import PermanentFailure
from jobs.tasks import register


class Addresses(serializers.ListField):
    """One address or a list of them."""

    child = serializers.EmailField()

    def to_internal_value(self, data: Any) -> list[str]:
        return super().to_internal_value([data] if isinstance(data, str) else data)


class EmailPayload(serializers.Serializer):
    to = Addresses(allow_empty=False, max_length=100)
    subject = serializers.CharField(max_length=998)
    body = serializers.CharField(allow_blank=True, trim_whitespace=False)
    html = serializers.CharField(required=False, trim_whitespace=False)
    cc = Addresses(required=False, max_length=100)
    bcc = Addresses(required=False, max_length=100)
    reply_to = Addresses(required=False, max_length=10)
    # "from" is a keyword in Python: declared below.


EmailPayload._declared_fields["from"] = serializers.EmailField(required=False)


@register("send_email", queue="default", max_attempts=5, schema=EmailPayload)
def send_email(payload: dict[str, Any]) -> dict[str, Any]:
    """Send one email: {to, subject, body, html?, cc?, bcc?, reply_to?, from?}."""
    serializer = EmailPayload(data=payload)
    if not serializer.is_valid():
        raise PermanentFailure(f"invalid payload: {serializer.errors}")
    data = serializer.validated_data
    message = EmailMultiAlternatives(
        subject=data["subject"],
        body=data["body"],
        from_email=data.get("from") or settings.DEFAULT_FROM_EMAIL,
        to=data["to"],
        cc=data.get("cc"),
        bcc=data.get("bcc"),
        reply_to=data.get("reply_to"),
    )
    if data.get("html"):
        message.attach_alternative(data["html"], "text/html")
    try:
        sent = message.send()
    except (ValueError, smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as exc:
        raise PermanentFailure(f"{type(exc).__name__}: {exc}") from exc
    return {"sent": sent, "to": data["to"]}

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


ADDRESS = {"type": "string", "format": "email", "maxLength": 320}


def _addresses(min_items: int, max_items: int) -> dict[str, Any]:
    """One address or a list of them, as JSON Schema."""
    listed = {"type": "array", "items": ADDRESS, "minItems": min_items, "maxItems": max_items}
    return {"anyOf": [ADDRESS, listed]}


class EmailPayload(serializers.Serializer):
    to = Addresses(allow_empty=False, max_length=100)
    # Kept as sent (no trimming): the JSON Schema below says exactly what is accepted.
    subject = serializers.CharField(max_length=998, trim_whitespace=False)
    body = serializers.CharField(allow_blank=True, trim_whitespace=False)
    html = serializers.CharField(required=False, trim_whitespace=False)
    cc = Addresses(required=False, max_length=100)
    bcc = Addresses(required=False, max_length=100)
    reply_to = Addresses(required=False, max_length=10)
    # "from" is a keyword in Python: declared below.

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The payload as JSON Schema: the API documents it, and it holds payloads to
        strict JSON types and known keys."""
        return {
            "type": "object",
            "required": ["to", "subject", "body"],
            "properties": {
                "to": _addresses(1, 100),
                "subject": {"type": "string", "minLength": 1, "maxLength": 998},
                "body": {"type": "string"},
                "html": {"type": "string", "minLength": 1},
                "cc": _addresses(0, 100),
                "bcc": _addresses(0, 100),
                "reply_to": _addresses(0, 10),
                "from": ADDRESS,
            },
            "additionalProperties": False,
        }


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

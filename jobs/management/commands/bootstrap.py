import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = "Create an 'admin' superuser and an API token if no user exists yet; print both once."

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        if User.objects.exists():
            self.stdout.write("Users exist already: nothing to bootstrap.")
            return
        password = secrets.token_urlsafe(12)
        user = User.objects.create_superuser("admin", email="", password=password)
        token = Token.objects.create(user=user)
        self.stdout.write(
            self.style.SUCCESS("Created the first user. Save these now; they are not shown again.")
        )
        self.stdout.write(f"  admin login:  admin / {password}")
        self.stdout.write(f"  API token:    {token.key}")
        self.stdout.write(f'  (curl -H "Authorization: Token {token.key}" ...)')

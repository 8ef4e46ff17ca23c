"""The building blocks of the API's serializers: how a JSON body is read and written.

Strict fields take only the JSON type the schema documents (``"5"`` is no
integer); ``ClosedSerializerMixin`` refuses fields a client may not send;
``FastRepresentationMixin`` writes plain attributes without DRF's per-field
machinery; ``SharedFieldsMixin`` builds a serializer's fields once per class.
Nothing here knows a resource: the serializers of jobs, schedules, tasks and
stats are in ``jobs.api.serializers``.
"""

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import models
from rest_framework import ISO_8601, serializers
from rest_framework.fields import SkipField
from rest_framework.settings import api_settings


class StrictTypeMixin:
    """Accept only the JSON type the schema documents: ``5`` is not ``"5"``, nor the reverse."""

    json_types: tuple[type, ...] = (str,)

    def to_internal_value(self, data: Any) -> Any:
        # bool is an int in Python, but true is no number in JSON.
        if not isinstance(data, self.json_types) or (
            isinstance(data, bool) and bool not in self.json_types
        ):
            self.fail("invalid")  # type: ignore[attr-defined]
        return super().to_internal_value(data)  # type: ignore[misc]


class StrictCharField(StrictTypeMixin, serializers.CharField):
    # Taken as sent: trimming would make " " blank and "  x" fit a shorter max_length,
    # both unlike what the schema's minLength and maxLength say.
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)


class StrictRegexField(StrictTypeMixin, serializers.RegexField):
    def __init__(self, regex: str, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(regex, **kwargs)


class StrictIntegerField(StrictTypeMixin, serializers.IntegerField):
    # JSON has one number type: 14.0 is the integer 14 (and 14.5 is refused).
    json_types = (int, float)


class StrictFloatField(StrictTypeMixin, serializers.FloatField):
    json_types = (int, float)


class StrictBooleanField(StrictTypeMixin, serializers.BooleanField):
    json_types = (bool,)


class StrictUUIDField(StrictTypeMixin, serializers.UUIDField):
    pass


# A ModelSerializer whose fields built from the model take only their JSON type. (A
# comment, not a docstring: the schema would show a docstring as every subclass's own.)
class StrictModelSerializer(serializers.ModelSerializer):
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.CharField: StrictCharField,
        models.TextField: StrictCharField,
        models.IntegerField: StrictIntegerField,
        models.SmallIntegerField: StrictIntegerField,
        models.PositiveIntegerField: StrictIntegerField,
        models.PositiveSmallIntegerField: StrictIntegerField,
        models.FloatField: StrictFloatField,
        models.BooleanField: StrictBooleanField,
        models.UUIDField: StrictUUIDField,
    }


class ClosedSerializerMixin:
    """Refuse fields a client may not send (unknown or read-only) instead of ignoring them.

    A typo (``"priorty"``) is a 400, not a job silently created without it. The
    schema says the same: request bodies have ``additionalProperties: false``.
    """

    def _writable(self) -> set[str]:
        writable = self.__dict__.get("_writable_names")
        if writable is None:  # once per serializer, not per item of a bulk create
            fields = self.fields  # type: ignore[attr-defined]
            writable = {name for name, field in fields.items() if not field.read_only}
            self.__dict__["_writable_names"] = writable
        return writable

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            if unknown := sorted(set(data) - self._writable()):
                raise serializers.ValidationError(
                    {name: ["Unknown or read-only field."] for name in unknown}
                )
        return super().to_internal_value(data)  # type: ignore[misc]


# Field classes whose to_representation returns a value of these exact types unchanged.
_UNCHANGED: list[tuple[type, tuple[type, ...]]] = [
    (serializers.BooleanField, (bool,)),
    (serializers.IntegerField, (int,)),
    (serializers.FloatField, (float,)),
    (serializers.CharField, (str,)),
]
_ANY = ()  # a non-binary JSONField: every value is returned unchanged

Convert = Callable[[Any], Any]


def _converter(field: serializers.Field) -> Convert | None:
    """DRF's ``field.to_representation``, without its lookups per value (the time zone
    of every datetime) for the usual values: a UUID, an aware datetime, a choice.
    None: no faster way for this field."""
    method = type(field).to_representation
    if method is serializers.UUIDField.to_representation and field.uuid_format == "hex_verbose":
        return str  # what DRF does
    if method is serializers.ChoiceField.to_representation:
        choices = field.choice_strings_to_values
        return lambda value: value if value == "" else choices.get(str(value), value)
    if method is not serializers.DateTimeField.to_representation:
        return None
    output_format = getattr(field, "format", api_settings.DATETIME_FORMAT)
    zone = field.timezone if hasattr(field, "timezone") else field.default_timezone()
    if output_format is None or output_format.lower() != ISO_8601 or zone is None:
        return None

    def iso(value: Any) -> Any:
        if not isinstance(value, datetime) or value.utcoffset() is None:
            return field.to_representation(value)  # a naive one: DRF makes it aware
        text = value.astimezone(zone).isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text

    return iso


class FastRepresentationMixin:
    """``to_representation`` without DRF's per-field machinery where it changes nothing.

    DRF calls ``get_attribute`` and ``to_representation`` on every field of every
    object: a good part of the CPU time of a 1,000-job answer. A plain attribute
    whose value already has the field's output type (a ``str`` for a ``CharField``,
    anything for a non-binary ``JSONField``) is copied as it is; a UUID, a choice or
    an aware datetime is converted as DRF would (the time zone is looked up once
    per serializer, that is once per answer); every other field (nested
    serializers) still goes through DRF. The output is DRF's, key for key
    (tests/test_api.py compares them).
    """

    def _plan(self) -> list[tuple[str, Any, str | None, tuple[type, ...], Convert | None]]:
        plan = self.__dict__.get("_representation_plan")
        if plan is None:
            plan = []
            for field in self._readable_fields:  # type: ignore[attr-defined]
                attr, types, convert = None, _ANY, None
                plain = len(field.source_attrs) == 1
                if plain and isinstance(field, serializers.JSONField) and not field.binary:
                    attr = field.source_attrs[0]
                for cls, exact in _UNCHANGED:
                    if plain and type(field).to_representation is cls.to_representation:
                        attr, types = field.source_attrs[0], exact
                if plain and (convert := _converter(field)):
                    attr = field.source_attrs[0]
                plan.append((field.field_name, field, attr, types, convert))
            self.__dict__["_representation_plan"] = plan
        return plan

    def to_representation(self, instance: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, field, attr, types, convert in self._plan():
            if attr is not None:
                value = getattr(instance, attr)
                if value is None or (types is _ANY and convert is None):
                    out[name] = value
                    continue
                if convert is not None:
                    out[name] = convert(value)
                    continue
                if type(value) in types:
                    out[name] = value
                    continue
            try:
                value = field.get_attribute(instance)
            except SkipField:
                continue
            out[name] = None if value is None else field.to_representation(value)
        return out


class SharedFieldsMixin:
    """``cls.shared(...)``: a serializer whose fields are built once per class, not per instance.

    DRF builds every field of a serializer for each instance (a deep copy of the
    declared fields, one field per model field): for a job's 22 fields, the largest
    part of the CPU of a single create. A bound field keeps no state of the data it
    validates or writes, so serializers made with ``shared`` borrow the fields of one
    instance built per class: the same fields, checks and messages, and the errors
    and data are the borrowing serializer's own. The shared fields are bound to a
    serializer without context that is not partial, so ``shared`` takes neither.
    """

    @classmethod
    def shared(cls, instance: Any = None, **kwargs: Any) -> Any:
        if kwargs.keys() - {"data"}:
            raise TypeError("shared() takes an instance or data only")
        serializer = cls(instance, **kwargs)
        shared = cls.__dict__.get("_shared")  # one per class, not inherited
        if shared is None:
            prototype = cls()
            prototype.fields  # noqa: B018  (DRF's cached property: built here, once)
            # What the other mixins derive from the fields alone is worked out once too.
            for derive in ("_writable", "_plan"):
                getattr(prototype, derive, lambda: None)()
            names = ("fields", "_writable_names", "_representation_plan")
            shared = {name: vars(prototype)[name] for name in names if name in vars(prototype)}
            cls._shared = shared  # type: ignore[attr-defined]
        serializer.__dict__.update(shared)
        return serializer

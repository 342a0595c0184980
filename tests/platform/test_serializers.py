"""Input serializers copy their leaf fields from per-class prototypes: each serializer still
owns its fields, and validates exactly as DRF's deep copies would."""

import copy
import threading

from rest_framework import serializers

from budgeting_site.platform.serializers import ClientIdField, MoneyField, StrictSerializer


class _In(StrictSerializer):
    name = ClientIdField()
    size = MoneyField(required=False)
    kind = serializers.ChoiceField(choices=["a", "b"], default="a")
    count = serializers.IntegerField(min_value=1, max_value=10, default=1)
    tags = serializers.DictField(child=serializers.CharField(max_length=3), required=False)
    extra = serializers.JSONField(default=dict, required=False)
    options = serializers.JSONField(required=False, default={"x": 1})


class _DeepCopied(_In):
    """The same fields, made the way DRF makes them."""

    def get_fields(self):
        return copy.deepcopy(self._declared_fields)


BODIES = [
    {"name": "n"},
    {"name": "n", "size": "1.5", "kind": "b", "count": 3, "tags": {"k": "abc"}},
    {"name": "", "kind": "c", "count": 11, "tags": {"k": "abcd"}, "size": True},
    {"name": "x" * 129, "count": "x", "tags": "nope"},
    {"name": None, "unknown": 1},
    ["not", "an", "object"],
]


def _outcome(serializer_class, body):
    s = serializer_class(data=body)
    return s.is_valid(), s.validated_data if s.is_valid() else s.errors


def test_answers_are_those_of_drf_deep_copies():
    for body in BODIES:
        assert _outcome(_In, body) == _outcome(_DeepCopied, body), body


def test_each_serializer_owns_its_fields():
    first, second = _In(data={"name": "a"}), _In(data={"name": "b"})
    for name in first.fields:
        assert first.fields[name] is not second.fields[name]
        assert first.fields[name].parent is first and second.fields[name].parent is second
    assert first.fields["tags"].child is not second.fields["tags"].child
    # A mutable default is the serializer's own: changing one answer changes no other.
    a, b = _In(data={"name": "a"}), _In(data={"name": "b"})
    assert a.is_valid() and b.is_valid()
    a.validated_data["options"]["x"] = 99
    assert b.validated_data["options"] == {"x": 1}
    assert _In._declared_fields["options"].default == {"x": 1}


def test_threads_validating_at_once_get_their_own_answers():
    errors: list[str] = []

    def work(i: int) -> None:
        for n in range(200):
            body = {"name": f"t{i}-{n}", "count": 1 + (i + n) % 10}
            s = _In(data=body)
            if not s.is_valid() or s.validated_data["name"] != body["name"]:
                errors.append(f"{i}/{n}")
            if s.validated_data["count"] != body["count"]:
                errors.append(f"{i}/{n} count")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []

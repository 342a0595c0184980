"""Validate real answers against the OpenAPI schema the code generates (what `make openapi`
commits and what schemathesis checks answers against later)."""

import functools
from typing import Any

import jsonschema
import yaml
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiYamlRenderer

PREFIX = "#/components/schemas/"


@functools.cache
def document() -> dict[str, Any]:
    generated = SchemaGenerator().get_schema(request=None, public=True)
    # Through YAML, as `make openapi` writes it.
    return yaml.safe_load(OpenApiYamlRenderer().render(generated, renderer_context={}))


def _json_schema(node: Any) -> Any:
    """OpenAPI 3.0 → JSON Schema 2020-12: `nullable`, boolean exclusive bounds, local refs."""
    if isinstance(node, list):
        return [_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _json_schema(v) for k, v in node.items() if k != "nullable"}
    if isinstance(out.get("$ref"), str) and out["$ref"].startswith(PREFIX):
        out["$ref"] = "#/$defs/" + out["$ref"][len(PREFIX) :]
    for bound, exclusive in (("maximum", "exclusiveMaximum"), ("minimum", "exclusiveMinimum")):
        if out.get(exclusive) is True:
            out[exclusive] = out.pop(bound)
        elif out.get(exclusive) is False:
            del out[exclusive]
    if node.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


def response_schema(path: str, method: str, status: int) -> dict[str, Any]:
    doc = document()
    operation = doc["paths"][path][method.lower()]
    content = operation["responses"][str(status)]["content"]["application/json"]
    schema = _json_schema(content["schema"])
    schema["$defs"] = _json_schema(doc["components"]["schemas"])
    return schema


def assert_documented(response: Any, path: str, method: str) -> dict[str, Any]:
    """The answer's status is documented for the operation and its body matches the schema.
    `path` is the template as in the schema (`/budget/v1/quotas/{quota_id}`)."""
    body = response.json()
    schema = response_schema(path, method, response.status_code)
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]
    return body

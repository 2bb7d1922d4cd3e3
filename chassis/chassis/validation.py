"""Request validation that names the offending field: connexion's own validators, whose
400 answers say what is wrong in a sentence (a parameter's error is a multi-line dump of
the schema), re-raised as problems with `field` — the same shape as every other refusal."""

from __future__ import annotations

from typing import Any

from connexion.datastructures import MediaTypeDict
from connexion.validators import VALIDATOR_MAP, JSONRequestBodyValidator, ParameterValidator
from jsonschema import ValidationError

from chassis.problems import Problem


def _bad_request(field: str, detail: str) -> Problem:
    return Problem(400, "Bad Request", detail, field=field)


class FieldNamingParameterValidator(ParameterValidator):
    def validate_request(self, request: Any) -> None:
        if self.strict_validation:
            extra = self.validate_query_parameter_list(request, security_params=self.security_query_params)
            if extra:
                names = sorted(extra)
                raise _bad_request(names[0], f"Unknown query parameter(s): {', '.join(names)}")
        checks = (
            ("query", self.validate_query_parameter),
            ("path", self.validate_path_parameter),
            ("header", self.validate_header_parameter),
            ("cookie", self.validate_cookie_parameter),
        )
        for location, check in checks:
            for param in self.parameters.get(location, []):
                error = check(param, request)
                if error:
                    # jsonschema's text: the message, then the schema and the instance.
                    message = str(error).split("\n", 1)[0]
                    raise _bad_request(param["name"], f"{param['name']} ({location}): {message}")


def body_field(error: ValidationError) -> str:
    """The dotted path of the offending member ("consent.given_by"), "body" for the whole."""
    path = [str(item) for item in error.absolute_path]
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [name for name in error.validator_value if name not in error.instance]
        path += missing[:1]
    elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set((error.schema or {}).get("properties", {}))
        unexpected = sorted(name for name in error.instance if name not in allowed)
        path += unexpected[:1]
    return ".".join(path) or "body"


class FieldNamingJSONBodyValidator(JSONRequestBodyValidator):
    def _validate(self, body: Any) -> dict[str, Any] | None:
        if not self._nullable and body is None:
            raise _bad_request("body", "Request body must not be empty")
        try:
            result: dict[str, Any] | None = self._validator.validate(body)
            return result
        except ValidationError as exc:
            field = body_field(exc)
            raise _bad_request(field, f"{field}: {exc.message}") from None


VALIDATORS: dict[str, Any] = {
    "parameter": FieldNamingParameterValidator,
    "body": MediaTypeDict({**VALIDATOR_MAP["body"], "*/*json": FieldNamingJSONBodyValidator}),
}

"""metav1.Status bodies, as a real API server sends them with an error code.

`ApiError` carries one; the server turns it into the HTTP response. Messages follow the API
server's wording (k8s.io/apimachinery/pkg/api/errors) so clients that match on them behave alike.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A request the fake API server refuses, with the Status body it answers."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            out["details"] = self.details
        out["code"] = self.code
        return out


def not_found(resource: str, name: str) -> ApiError:
    return ApiError(
        404, "NotFound", f'{resource} "{name}" not found', {"name": name, "kind": resource}
    )


def already_exists(resource: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{resource} "{name}" already exists',
        {"name": name, "kind": resource},
    )


def conflict(resource: str, name: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {resource} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        {"name": name, "kind": resource},
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unsupported_media(content_type: str) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - "
        f"accepted media types include: application/json-patch+json, "
        f"application/merge-patch+json, application/apply-patch+yaml, "
        f'application/strategic-merge-patch+json (got "{content_type}")',
    )


def invalid(kind: str, name: str, causes: list[tuple[str, str, str]]) -> ApiError:
    """422 Invalid: `causes` are (reason, field, message-after-field) as field.Error prints them."""
    rendered = [f"{field}: {msg}" for _reason, field, msg in causes]
    joined = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
    return ApiError(
        422,
        "Invalid",
        f'{kind} "{name}" is invalid: {joined}',
        {
            "name": name,
            "kind": kind,
            "causes": [
                {"reason": reason, "message": msg, "field": field} for reason, field, msg in causes
            ],
        },
    )


def options_invalid(kind: str, causes: list[tuple[str, str, str]]) -> ApiError:
    """422 for bad request options (CreateOptions, UpdateOptions, PatchOptions of meta.k8s.io),
    as ValidatePatchOptions and ValidateFieldManager word them."""
    rendered = [f"{field}: {msg}" for _reason, field, msg in causes]
    joined = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
    return ApiError(
        422,
        "Invalid",
        f'{kind}.meta.k8s.io "" is invalid: {joined}',
        {
            "group": "meta.k8s.io",
            "kind": kind,
            "causes": [
                {"reason": reason, "message": msg, "field": field} for reason, field, msg in causes
            ],
        },
    )


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def forbidden(user: str, verb: str, resource: str, name: str) -> ApiError:
    what = f'{resource} "{name}"' if name else resource
    return ApiError(
        403,
        "Forbidden",
        f'{what} is forbidden: User "{user}" cannot {verb} resource "{resource}" in API group "" '
        "at the cluster scope",
        {"name": name, "kind": resource} if name else {"kind": resource},
    )

"""The ratelimits app's domain errors; the platform's handler renders them (SPEC 1.3)."""

from budgeting_site.platform.errors import Conflict, Forbidden, NotFound, ValidationFailed


class PolicyNotFound(NotFound):
    default_message = "Rate-limit policy not found"


class DuplicatePolicy(Conflict):
    default_message = "A policy for this tenant, scope and resource type already exists"


class StalePolicyVersion(Conflict):
    default_message = "The policy was changed since this version was read"


class InvalidPolicy(ValidationFailed):
    default_message = "The policy is not valid"


class EmergencyCapacityForbidden(Forbidden):
    default_message = "Only a system_architect may grant emergency capacity"

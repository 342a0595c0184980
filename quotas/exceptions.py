"""The quotas app's domain errors; the platform's handler renders them as the flat body."""

from budgeting_site.platform.errors import Conflict, NotFound, PayloadTooLarge, ValidationFailed


class QuotaNotFound(NotFound):
    default_message = "Quota not found"


class QuotaOverlap(Conflict):
    default_message = "An overlapping quota exists for this target and resource type"


class QuotaInUse(Conflict):
    default_message = "The quota has usage and cannot be deleted"


class QuotaVersionMismatch(Conflict):
    default_message = "The quota was changed since the version you read"


class QuotaBelowUsage(Conflict):
    default_message = "allocated_amount + max_burst_amount would be below used_amount"


class QuotaAlreadyRenewed(Conflict):
    default_message = "The quota has already been renewed"


class InvalidQuota(ValidationFailed):
    default_message = "The quota request is not valid"


class BatchTooLarge(PayloadTooLarge):
    default_message = "A quota batch holds at most 100 allocations"

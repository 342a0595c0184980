"""The budgets app's domain errors, each rendered as the flat error body of SPEC 1.3."""

from budgeting_site.platform.errors import (
    Conflict,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    ValidationFailed,
)


class BudgetNotFound(NotFound):
    default_message = "Budget not found"


class ReservationNotFound(NotFound):
    default_message = "Reservation not found"


class BudgetOverlap(Conflict):
    default_message = "An active budget for this target already overlaps these dates"


class VersionMismatch(Conflict):
    default_message = "The budget has changed since you read it (stale version)"


class BudgetInUse(Conflict):
    default_message = "The budget has spending or holds in its current period"


class ForceDeleteForbidden(Forbidden):
    default_message = "Only a tenant_admin may force the deletion of a budget in use"


class InvalidHoldTransition(Conflict):
    default_message = "The reservation cannot make that transition"


class BudgetInvalid(ValidationFailed):
    pass


class BudgetBusy(ServiceUnavailable):
    """Contention outlasted the retry budget: the caller should retry, nothing was decided."""

    default_message = "The budget is busy; retry the request"

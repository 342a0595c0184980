from budgeting_site.platform.errors import Conflict, Forbidden, NotFound


class ApprovalNotFound(NotFound):
    default_message = "Approval request not found"


class InvalidTransition(Conflict):
    default_message = "This approval request cannot make that transition"


class NotAnApprover(Forbidden):
    default_message = "Your roles do not allow deciding approval requests"


class SelfApprovalForbidden(Forbidden):
    default_message = "The requester cannot decide their own request"

from budgeting_site.platform.errors import Conflict, NotFound, ValidationFailed


class SubscriptionNotFound(NotFound):
    default_message = "Subscription not found"


class AlertNotFound(NotFound):
    default_message = "Alert not found"


class InvalidAlertTransition(Conflict):
    default_message = "The alert cannot make this transition"


class UnknownEventType(ValidationFailed):
    default_message = "Unknown event type"


class WebhookUrlRefused(ValidationFailed):
    default_message = "webhook_url is not allowed"


class InvalidFilters(ValidationFailed):
    default_message = "filters are not valid"


class DeliveryNotReplayable(Conflict):
    default_message = "Only a dead-lettered delivery can be replayed"

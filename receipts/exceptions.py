from budgeting_site.platform.errors import NotFound, ValidationFailed


class ReceiptNotFound(NotFound):
    default_message = "Receipt not found"


class InvalidCursor(ValidationFailed):
    default_message = "cursor is not valid"

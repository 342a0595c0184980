# GENERATED from budgeting_client/_async/__init__.py by client/tools/unasync.py: do not edit.
"""The client in async form: the source the sync form is generated from."""

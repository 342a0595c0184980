"""The client in async form: the source the sync form is generated from."""

"""User code for tests/service/test_user_models.py: a ModelDesc the server imports by name."""

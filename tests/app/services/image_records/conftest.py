from tests.app.services.image_stack import stack  # noqa: F401  the real image services, per test

# This app exists to fail on import: the module is missing on purpose.
import a_module_that_does_not_exist  # type: ignore[import-not-found]  # noqa: F401

"""User-facing errors: one line that names the field or file, never a JAX traceback."""


class JaxcondError(ValueError):
  """Base class; entry points print `str(err)` and exit with status 2."""


class ConfigError(JaxcondError):
  """A config field is missing, unknown or out of range."""


class DataError(JaxcondError):
  """A dataset file is missing, truncated, malformed, or inconsistent."""

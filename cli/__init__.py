"""The `scoregen` command line: thin Click commands over `reference` and `scoregen_keras`."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("scoregen")
except PackageNotFoundError:  # running from a source checkout that was not pip-installed
    __version__ = "0+unknown"

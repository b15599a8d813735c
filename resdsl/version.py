"""The package version, in the core so that backends can stamp artifacts without importing the facade."""

__version__ = "0.1.0"

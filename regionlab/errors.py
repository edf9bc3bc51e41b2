"""Typed errors of the library. All are ``ValueError`` subclasses except resource errors."""

from __future__ import annotations


class RegionLabError(Exception):
    """Base class of every error RegionLab raises on purpose."""


class InputError(RegionLabError, ValueError):
    """Bad user input (image, mask, text, numbers): the message says what and the limit."""


class ModelUnavailableError(RegionLabError, RuntimeError):
    """A requested model cannot be loaded here: the message names it, the source tried and how
    to provide it."""


class ResourceError(RegionLabError, RuntimeError):
    """Out of memory or another resource limit; the message says what to lower."""

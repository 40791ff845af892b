"""Validation: what the schema cannot see — fields against the store, templates, cross-file ids."""

from engine.validate.project import ValidationReport, validate_paths
from engine.validate.semantic import check_playbook

__all__ = ["ValidationReport", "check_playbook", "validate_paths"]

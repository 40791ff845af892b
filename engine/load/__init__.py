"""Loading: YAML text → spec models, keeping line:col for every node so errors point at the file."""

from engine.load.playbooks import (
    LoadAttempt,
    LoadedPlaybook,
    attempt_playbook,
    attempt_playbook_text,
    load_playbook,
    load_playbook_text,
)
from engine.load.yaml_nodes import Located, parse_yaml

__all__ = [
    "LoadAttempt",
    "LoadedPlaybook",
    "Located",
    "attempt_playbook",
    "attempt_playbook_text",
    "load_playbook",
    "load_playbook_text",
    "parse_yaml",
]

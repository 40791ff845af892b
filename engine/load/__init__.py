"""Loading: YAML text → spec models, keeping line:col for every node so errors point at the file."""

from engine.load.playbooks import LoadedPlaybook, load_playbook, load_playbook_text
from engine.load.yaml_nodes import Located, parse_yaml

__all__ = ["LoadedPlaybook", "Located", "load_playbook", "load_playbook_text", "parse_yaml"]

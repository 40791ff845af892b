"""A/B experiments: comparing the arms of a playbook experiment."""

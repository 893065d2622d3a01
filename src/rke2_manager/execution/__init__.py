"""Running playbooks: the ansible-runner adapter and the translation of its events."""

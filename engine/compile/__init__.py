"""Compiling: spec → frozen CompiledPlaybook whose predicates are SQLAlchemy expressions. Pure."""

from engine.compile.playbook import CompiledPlaybook, CompiledStep, compile_playbook

__all__ = ["CompiledPlaybook", "CompiledStep", "compile_playbook"]

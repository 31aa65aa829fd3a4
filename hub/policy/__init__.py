"""Sharing policy per site: versioned rules (every version kept), deny by default, diff,
rollback, dry run; re-checked at ingest."""

from hub.policy.service import add_rule, current, replace_rules

__all__ = ["add_rule", "current", "replace_rules"]

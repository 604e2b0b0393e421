"""JSON Merge Patch (RFC 7396): the PATCH document says what changes; null removes a member."""

from __future__ import annotations

from typing import Any


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply ``patch`` to ``target`` and return the result (inputs are not modified)."""
    if not isinstance(patch, dict):
        return patch  # a non-object patch replaces the target wholesale, arrays included
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name), value)
    return result

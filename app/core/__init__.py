"""Cross-cutting plumbing every request goes through: request ids, logging, errors, health."""

"""The foundations every coder shares: errors, distributions, shared randomness, arrival clocks,
truncated sampling."""

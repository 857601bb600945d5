"""Small shared helpers: atomic file writes, hashing, provenance, logging set-up."""

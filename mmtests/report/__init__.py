"""The Markdown report, built from records only (no torch, no model code): runs on any laptop."""

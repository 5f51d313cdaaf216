"""Reading the log: queries, single events, pagination cursors (shared by API and CLI)."""

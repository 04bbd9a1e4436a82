"""Built-in restorekit plugins."""

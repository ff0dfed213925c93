"""mpgen.golden."""

"""mpgen.sim."""

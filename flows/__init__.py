"""mpgen.flows."""

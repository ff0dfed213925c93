"""mpgen.rtl."""

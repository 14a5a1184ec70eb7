"""Second factors: one module per factor behind one protocol, and the enrollment policy."""

"""edgedigits.conversion."""

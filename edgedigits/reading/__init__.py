"""edgedigits.reading."""

"""Records: what the service keeps about scored windows, and the routes that read them."""

"""netmeta: network metadata collector."""

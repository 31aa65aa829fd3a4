"""Organizations, sites, enrollment tokens, revocation and removal."""

"""The fleet: what each site's agent reports, kept as a bounded history, and the admin's view."""

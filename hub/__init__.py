"""Hexchange hub: node API over mutual TLS, enrollment, ingest, index, deliveries."""

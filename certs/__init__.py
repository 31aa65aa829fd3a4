"""Hexchange PKI: certificate authority, enrollment tokens, CSR signing, TLS contexts."""

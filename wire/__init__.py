"""Wire contract between node agents and the hub: manifest, envelope, HTTP models.

Pure: bytes and caller-supplied streams in, results out. No file or network I/O, no
environment, no module state. Modules: `version` (format version and caps), `errors`,
`manifest` (hub-visible bundle description), `header` (sealed header and its parser),
`envelope` (seal/open), `receipt` (hub receipts), `payload` (plaintext tar layout),
`api` (HTTP models), `canonical` and `signatures` (shared helpers).
"""

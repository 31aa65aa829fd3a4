"""Wire contract between node agents and the hub: manifest, envelope, HTTP models."""

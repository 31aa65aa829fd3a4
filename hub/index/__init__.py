"""The bundle index as people search it (built from manifests only: no patient identity)."""

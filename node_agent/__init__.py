"""Hexchange node agent: the clinic-side shell (DICOM SCP, spool, pipeline, outbox, uploader)."""

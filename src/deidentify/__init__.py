"""What may leave a site: DICOM PS3.15 Annex E de-identification as data, pure functions."""

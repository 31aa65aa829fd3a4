"""Research collections: de-identified instances checked again at the hub, stored in the blob
store, indexed for QIDO-RS and served over DICOMweb to researchers with a grant."""

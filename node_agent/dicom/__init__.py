"""DICOM side of the agent: SCP (receive), SCU (pull from the PACS, store inbound)."""

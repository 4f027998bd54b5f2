"""Video: clips recorded to disk, video files read, checked against DICOM's video transfer syntaxes,
remuxed, transcoded, trimmed and split (PyAV; ``pip install kiosk[video]``).

``facts`` describes a clip without importing PyAV; ``probe`` reads one and says which DICOM transfer
syntax it can be stored under as it is.
"""

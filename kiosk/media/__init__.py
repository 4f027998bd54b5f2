"""Removable media: reading patients' CDs and USB sticks (File-set Reader), importing them under the
local patient (IHE IRWF.b Importer) and writing PDI media (File-set Creator, IHE PDI).

- ``profiles``: the media application profiles exports follow (one table: code and docs)
- ``model``: what a medium holds (patients, studies, series, instances, problems)
- ``reader``: a DICOMDIR or a folder -> ``Medium``; which mounted media hold DICOM
- ``reconcile``: a medium's object put under the local patient (Other Patient IDs, Original Attributes)
- ``importer``: chosen studies -> reconciled objects queued in the outbox, skipping what the archive holds
- ``pdi``: a profile-conformant File-set: DICOMDIR, IHE_PDI web content, README.TXT; ISO image, burning
- ``dicomdir``: the DICOMDIR writer: records in a tree, offsets computed, written once (updates keep every record)
"""

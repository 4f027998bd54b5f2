"""DICOM networking on pynetdicom: echo, worklist, query, store, storage commitment, our listener.

Public entry points live in their modules (``echo.echo``, ``store.store_files``,
``commitment.request_commitment``, ...); ``nodes.associate`` is the one place
that opens associations, so every connection gets the same timeouts, TLS and
socket options, and every failure the same people-facing errors. pynetdicom's
internals are used in ``fastpath`` only, behind ``[network] fast_path``.
"""

"""The DICOM audit trail (IHE ATNA): what the kiosk did, with whom, to which patient's data.

- ``codes``: the coded values of DICOM PS3.15 A.5 and RFC 3881;
- ``messages``: the ``AuditMessage`` structure and its XML;
- ``events``: one builder per audit event the kiosk records;
- ``queue``: the durable local copy (SQLite, owner only), every message written there first;
- ``syslog``: RFC 5424 framing and the RFC 5425 (TLS) / RFC 5426 (UDP) transports;
- ``sender``: the thread that delivers the queue, in order, to the Audit Record Repository;
- ``trail``: this process's trail: ``record`` (never raises), the operator, the sender;
- ``transfers``: the two messages of one attempt to send files (per study, read from the files).
"""

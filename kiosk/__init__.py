"""kiosk: a touch-friendly capture-to-DICOM station; its identity in files and on the wire."""

__version__ = "0.1.0"

# Fixed for this implementation: a UUID-derived UID (PS3.5 B.2), no registered root needed. Written
# in the file meta of every file the kiosk makes and announced in every association (PS3.7 D.3.3.2).
IMPLEMENTATION_CLASS_UID = "2.25.38431149485391800685579489684331599437"
IMPLEMENTATION_VERSION_NAME = f"KIOSK_{__version__}"[:16]

"""One module and one .kv file per screen; each module exports ``SCREEN``."""

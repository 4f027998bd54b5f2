"""Documents that arrive by themselves (docs/drivers.md, "Watched inbox"): print jobs and files in a
watched folder, filed to a patient by rules (``rules``) through the station, or held for a person
in the Inbox (``store``); ``runner`` makes the passes, ``folders`` says where each file goes."""

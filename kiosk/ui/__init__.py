"""The Kivy touch UI: a thin layer over session, drivers, dicomize, net and outbox.

Only this package imports Kivy. Start it with ``kiosk.ui.app.run_ui(config)``.
"""

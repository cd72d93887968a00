"""``dermaguard web``: the phone-friendly local dashboard, a process apart from the daemon.

It only reads the device's MQTT topics (through :mod:`dermaguard.mqtt.decode`, like ``watch``),
sends commands on ``cmd/`` and reads the history database read-only, so nothing a browser does
can reach the alarm path.
"""

"""``dermaguard watch``: a read-only live view of one device's MQTT topics, in the terminal.

Split by job, so that what a person sees can be tested without a broker or a terminal:

* :mod:`.model` — :class:`~.model.WatchModel` ingests ``(topic, payload, now)`` through the
  shared decoder (:mod:`dermaguard.mqtt.decode`, which checks every payload against the shipped
  JSON Schemas) and keeps what the view needs. It never raises on what arrives over the network:
  a payload that does not fit the contract is ignored and counted, and events are de-duplicated
  by ``id`` (QoS 1 may deliver one twice). The dashboard (``ui/web/live.py``) reuses it.
* :mod:`.view` — :func:`~.view.render` turns the model into a rich renderable for a given
  ``now``; it is pure, so the sterilization countdown and the over-pressure flashing are a
  function of time alone.
* :mod:`.subscriber` — the thin shell: a subscriber that never publishes (no will, no birth, its
  own random client id so it can never take the device's session over), a ``rich.live.Live``
  loop, ``--once`` for scripts, and :func:`~.subscriber.watch`, the command's entry.

``now`` is ``time.monotonic()`` throughout: every duration shown is measured on this machine
between receipts, and every time of day comes from the device's own timestamps, so a laptop
whose clock disagrees with the Pi's (or a simulation on an accelerated clock) shows nothing
contradictory.

Imports run one way, model ← view ← subscriber: the constants two of them share live in the
lower one.
"""

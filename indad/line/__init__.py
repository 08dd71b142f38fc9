"""Plugging indad into a production line: frame sources, the result pipeline, sinks and their persistent outbox.

Above :mod:`indad.inference` and :mod:`indad.service`: :mod:`.result` (the result every consumer shares),
:mod:`.pipeline` (scored image -> decision -> regions -> pictures / sinks), :mod:`.outbox` (results kept on disk
until each sink has them), :mod:`.sinks` (MQTT, webhooks), :mod:`.sources` (video files, streams, cameras),
:mod:`.stream` (a source scored frame by frame). Submodules are imported on use (no import-time work).
"""

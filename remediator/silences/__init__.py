"""Alertmanager silences while a `silence:` rule's steps work: the API client
(client.py), creating or extending one when a step starts (create.py), and the loop
that expires them and polls for the resolves Alertmanager no longer sends (watch.py)."""

"""Pushing verdicts out and showing them: the verdict stream, the webhook/Alertmanager outbox, the web page.

Data flow: the classifier publishes each batch's verdicts to one capped Redis Stream (``stream.py``); the
``DeliveryLoop`` (``worker.py``) reads it as a consumer group, turns every anomalous window into one outbox
job per matching target (``outbox.py``), and sends due jobs with retries (``targets.py`` builds the bodies).
``routes.py`` serves ``GET /anomalies/stream`` (SSE), the chart's counts and the page under ``/ui``.
"""

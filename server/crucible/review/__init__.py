"""Optional AI review on save: which code to review (``units.py``), how the model is asked and
its findings read (``findings.py``), and the service that debounces, caches and bounds it
(``service.py``)."""

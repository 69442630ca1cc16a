"""Hover explanations of diagnostics: what a hover explains and how it is asked and shown
(``explanation.py``), and the service that answers it, time-boxed and cached
(``service.py``)."""

"""LLM providers: one module per wire format behind the ``Provider`` protocol (``base.py``).

``registry`` turns ``ProviderSettings`` into providers; ``errors`` holds the typed error tree
every provider raises; ``http`` (client, auth, error mapping, JSON bodies) and ``streams``
(SSE and NDJSON framing) are the only modules that touch httpx's exceptions; ``http_provider``
is the base class every format extends, through which each of its requests goes out, and
``listing`` reads the model listings probes get. Nothing is
re-exported here, so importing ``providers.base`` does not import httpx.
"""

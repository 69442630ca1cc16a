"""Scheduling primitives: when and how requests reach a provider (pure asyncio, no I/O).

``debounce`` (how long to wait after a keystroke), ``latest`` (latest-wins per document),
``singleflight`` (identical in-flight work shared), ``batcher`` (distinct prompts grouped into
one provider call). Nothing is re-exported here.
"""

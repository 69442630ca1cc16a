"""The ``local`` provider kind's own llama.cpp server: sized from the machine (``sizing.py``),
run as a child process (``child.py``, the only module importing xllamacpp) and supervised by
``ManagedLlamaServer`` (``process.py``). ``providers/local.py`` speaks to it as ``llamacpp``."""

"""``crucible-lsp doctor``: can Crucible serve completions here, and if not, what to fix.

A command for people: it prints to stdout, in this order,

1. each provider's verdict: reachable (the probe's answer, in words to act on), model present
   (from the server's model listing), API key present (the variable's NAME from
   ``api_key_env``, never its value), the first-token latency of ONE tiny real completion
   (``max_tokens`` 4, skipped when the probe failed), its roles, and the concurrency in force
   (``max_concurrency``: ``resilience.max_concurrency`` capped by its own ``max_connections``);
2. one overall verdict line;
3. the workspace, found as an editor finds it (``config.loader.find_workspace_root``) unless
   ``--workspace`` names it, and the configuration files in merge order, each loaded, not
   found, or in error;
4. configuration problems, then the effective configuration as TOML, secrets masked.

``--json`` prints one object instead (``verdict``, ``workspace``, ``config_files``,
``providers``, ``settings``, ``problems``) and nothing else on stdout.

Exit 0 when at least one provider with the completion role can serve (reachable, the model
present or not knowable, a key when it needs one, and the tiny completion answered), 1 when
none can; ``cli.py`` exits 2 on a usage error.

Keys: no key, nor any part of one, is printed. Every text shown passes through
``mask_secrets`` (``providers.http.mask_key`` for each key in the environment, plus any
key-like run starting like one), so even a server that echoes a key in an error is masked.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from crucible.config.loader import describe, load_settings
from crucible.config.settings import ProviderSettings
from crucible.doctor.checks import ProviderCheck, check_all, locate_workspace, verdict
from crucible.doctor.report import json_report, text_report
from crucible.providers.default_choice import choose as choose_default
from crucible.providers.default_choice import unconfigured
from crucible.providers.http import mask_key

__all__ = ["ProviderCheck", "mask_secrets", "run_doctor", "verdict"]


def mask_secrets(text: str, keys: Sequence[str]) -> str:
    """``text`` with each key masked (``providers.http.mask_key``), and with every key-like
    run that starts like one of them masked too: servers echo keys half-masked, such as
    OpenAI's ``sk-proj-****abcd``, and even a prefix of a key must not be printed."""
    for key in keys:
        text = mask_key(text, key)
        if len(key) >= 8:
            text = re.sub(re.escape(key[:4]) + r"[\w\-*.]*", "***", text)
    return text


def _keys_in(providers: Sequence[ProviderSettings], env: Mapping[str, str]) -> list[str]:
    """The keys of the configured providers that the environment holds."""
    values = [env.get(p.api_key_env) for p in providers if p.api_key_env]
    return [value for value in values if value]


def run_doctor(
    *,
    config_path: Path | None,
    cwd: Path,
    workspace: Path | None = None,
    as_json: bool = False,
    env: Mapping[str, str] = os.environ,
) -> int:
    """Check, print, and return the exit code (0 can serve, 1 cannot)."""
    where = locate_workspace(cwd, workspace)
    result = load_settings(workspace_root=where.path, config_path=config_path, env=env)
    cut_off = result.settings.resilience.first_byte_timeout_ms
    providers = result.settings.providers
    default = None
    if unconfigured(providers):  # what the server would choose (providers/default_choice.py)
        default = asyncio.run(choose_default(env))
        providers = (default.provider,)
    checks = asyncio.run(check_all(providers, env, cut_off))
    view = describe(result.settings, env)
    keys = _keys_in(result.settings.providers, env)
    chosen = None if default is None else {"kind": default.kind, "reason": default.reason}
    if as_json:
        text = json.dumps({**json_report(checks, where, result, view), "default": chosen}, indent=2)
    else:
        lines = text_report(checks, where, result, view)
        if default is not None:
            lines = [f"No provider configured: using {default.kind}: {default.reason}.", *lines]
        text = "\n".join(lines)
    print(mask_secrets(text, keys))
    return 0 if verdict(checks)[0] != "not ready" else 1

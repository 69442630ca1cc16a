"""The configuration schema: frozen dataclasses, their defaults and a description per field.

This module is the single home of every default. The loader (``loader.py``) turns TOML and
JSON into these objects; the rest of the server only ever sees a ``Settings``. Each field's
description lives in ``metadata["doc"]`` so that ``doctor`` and the docs can print it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ProviderKind(StrEnum):
    """The wire formats Crucible speaks (one module each under ``providers/``)."""

    OLLAMA = "ollama"
    OPENAI = "openai"
    LLAMACPP = "llamacpp"
    ANTHROPIC = "anthropic"
    CODESTRAL = "codestral"
    # A llama.cpp server Crucible starts and supervises itself (crucible/local/), spoken to
    # as ``llamacpp``; needs the ``local`` extra (xllamacpp).
    LOCAL = "local"


class Role(StrEnum):
    """The features a provider may serve."""

    COMPLETION = "completion"
    CHAT = "chat"


class DebounceMode(StrEnum):
    """How long to wait after a keystroke before asking a provider."""

    ADAPTIVE = "adaptive"  # from the typing rhythm, the provider's latency and the cursor spot
    FIXED = "fixed"  # always debounce_ms


class Prefetch(StrEnum):
    """Whether to compute the next suggestion, as if the shown one were accepted, ahead."""

    AUTO = "auto"  # only when every completion provider is local (a loopback address)
    ON = "on"
    OFF = "off"


class CompletionItems(StrEnum):
    """Whether textDocument/completion (the completion menu) also offers the AI suggestion."""

    AUTO = "auto"  # decided per client: lsp/clients.py (menu_wants_suggestions)
    ON = "on"  # written `true` in the configuration
    OFF = "off"  # written `false`


class Multiline(StrEnum):
    """When an inline completion may span several lines."""

    AUTO = "auto"  # multi-line where a block is expected (empty line, after an opener)
    ALWAYS = "always"
    NEVER = "never"


# Top-level keys of the ``crucible`` section that belong to editor clients, not to the server:
# vscode-languageclient adds ``trace.server`` to every extension's settings, and Crucible's own
# editor clients keep their settings (the server's path and arguments, client behaviour) under
# ``server`` and ``client``. The loader skips them without a word (DEBUG log), so an editor that
# sends its whole section never shows an "unknown key" warning.
CLIENT_KEYS: tuple[str, ...] = ("trace", "server", "client")

# The FIM template names ``fim_template`` accepts besides "auto". context/fim.py owns the
# templates themselves; the names are repeated here because config/ sits below context/ in the
# dependency order and must not import it. A test keeps the two lists in step.
FIM_TEMPLATE_NAMES: tuple[str, ...] = ("qwen", "starcoder", "codellama", "deepseek", "codestral")

# The catalogue model (local/catalogue.py) a ``local`` provider serves when it names none. Here
# because config/ sits below local/; a test keeps the two in step.
DEFAULT_LOCAL_MODEL = "qwen2.5-coder-1.5b"

# Each kind's usual local address: a provider table that names a kind but no base_url gets its
# kind's address, not Ollama's.
_DEFAULT_BASE_URLS: dict[ProviderKind, str] = {
    ProviderKind.OLLAMA: "http://127.0.0.1:11434",
    ProviderKind.LLAMACPP: "http://127.0.0.1:8080",
    ProviderKind.OPENAI: "http://127.0.0.1:8000/v1",
    # The hosted APIs, each as its own SDK takes it: Anthropic's root has no /v1, while
    # codestral's, like openai's, includes it.
    ProviderKind.ANTHROPIC: "https://api.anthropic.com",
    ProviderKind.CODESTRAL: "https://codestral.mistral.ai/v1",
    # Unused: the managed server's port is chosen free at each launch, on loopback.
    ProviderKind.LOCAL: "http://127.0.0.1",
}


def default_base_url(kind: ProviderKind) -> str:
    """The base_url a provider of ``kind`` gets when its table gives none."""
    return _DEFAULT_BASE_URLS[kind]


def doc(text: str, *, bounds: tuple[float, float] | None = None, **kwargs: Any) -> Any:
    """A dataclass field carrying its description (and, for numbers, its inclusive
    ``bounds``) in its metadata; the loader rejects values outside the bounds.

    ruff's RUF009 cannot see that this returns a ``field()``, hence the noqa where a field's
    type is not one it knows to be immutable.
    """
    metadata: dict[str, Any] = {"doc": text}
    if bounds is not None:
        metadata["bounds"] = bounds
    return field(metadata=metadata, **kwargs)


@dataclass(frozen=True, kw_only=True)
class ProviderSettings:
    """One LLM endpoint; ``[[providers]]`` in TOML."""

    name: str = doc("Unique name, used in logs and crucible/status.", default="local")
    kind: ProviderKind = doc(  # noqa: RUF009 (doc() returns a field())
        "Wire format: ollama | openai | llamacpp | anthropic | codestral | local (a llama.cpp"
        " server Crucible runs itself; needs pip install 'crucible-lsp[local]').",
        default=ProviderKind.OLLAMA,
    )
    base_url: str = doc(
        "API root. For openai and codestral it includes /v1, as the OpenAI SDK takes it;"
        " for anthropic it does not, as Anthropic's SDK takes it.",
        default="http://127.0.0.1:11434",
    )
    model: str = doc("Model name sent to the provider.", default="qwen2.5-coder:1.5b-base")
    api_key_env: str | None = doc(
        "NAME of the environment variable holding the API key; keys never live in files.",
        default=None,
    )
    roles: tuple[Role, ...] = doc(
        "Features this provider serves: completion, chat.",
        default=(Role.COMPLETION, Role.CHAT),
    )
    priority: int = doc(
        "Lower is tried first; ties keep the listed order.", bounds=(-1000, 1000), default=0
    )
    fim_template: str = doc(
        "FIM template for kinds that render one into the prompt (openai): auto | qwen |"
        " starcoder | codellama | deepseek | codestral. auto detects it from the model name.",
        default="auto",
    )
    connect_timeout_ms: int = doc("TCP connect timeout.", bounds=(10, 60_000), default=1000)
    batch_window_ms: int = doc(
        "Micro-batching (openai kind only, opt-in): completions for different prompts that"
        " arrive within this window go out as one /v1/completions call with a prompt list."
        " 0 turns it off.",
        bounds=(0, 200),
        default=0,
    )
    batch_max: int = doc("Most prompts in one batched call.", bounds=(1, 64), default=8)
    max_connections: int = doc(
        "Connection pool size for this provider, and so the most requests in flight to it"
        " (resilience.max_concurrency caps it too).",
        bounds=(1, 256),
        default=4,
    )
    # The team's budget (team/budget.py): limits every teammate's Crucible pointing at the
    # same API (kind, address, model) shares through [cache] shared_url's Redis. Trusted
    # configuration only, like every provider key (docs/architecture.md, "A team budget").
    team_calls_per_minute: int = doc(
        "Calls a minute the whole team may make to this provider (its kind, address and"
        " model), counted in the shared Redis ([cache] shared_url). 0: no limit.",
        bounds=(0, 1_000_000),
        default=0,
    )
    team_tokens_per_minute: int = doc(
        "Tokens a minute the whole team may spend on this provider: each call is charged"
        " prompt characters / 4 + max_tokens before it is made. 0: no limit.",
        bounds=(0, 1_000_000_000),
        default=0,
    )
    team_tokens_per_month: int = doc(
        "Tokens the whole team may spend on this provider per calendar month (UTC): charged"
        " like team_tokens_per_minute, then corrected to what the answer used. Reached: the"
        " provider is not asked until the month ends. 0: no limit.",
        bounds=(0, 1_000_000_000_000),
        default=0,
    )
    # The keys below are the local kind's: how Crucible runs its own llama.cpp server.
    model_path: str = doc(
        "local kind: the GGUF model file to serve (absolute, or ~/...), instead of the"
        " catalogue model named by model (crucible-lsp models list). Never taken from a"
        " workspace's crucible.toml.",
        default="",
    )
    model_url: str = doc(
        "local kind: where to download the GGUF model from (http or https), instead of a"
        " catalogue model; kept in $XDG_CACHE_HOME/crucible/models. Never from a workspace.",
        default="",
    )
    sha256: str = doc(
        "local kind: the SHA-256 (hex) model_url's file must have; without it the download"
        " is refused unless pulled with --no-verify.",
        default="",
    )
    threads: int = doc(
        "local kind: CPU threads the server computes with; 0 chooses from the machine's cores.",
        bounds=(0, 256),
        default=0,
    )
    ctx_size: int = doc(
        "local kind: context size in tokens, shared by the server's 2 slots; 0 chooses from"
        " the machine's memory (2048 to 8192).",
        bounds=(0, 131_072),
        default=0,
    )
    idle_stop_s: int = doc(
        "local kind: stop the server after this many seconds without a request (it starts"
        " again on the next one); 0 keeps it running until Crucible exits.",
        bounds=(0, 86_400),
        default=900,
    )


@dataclass(frozen=True, kw_only=True)
class CompletionSettings:
    """``[completion]``: inline completions."""

    enabled: bool = doc("Serve inline completions.", default=True)
    completion_items: CompletionItems = doc(  # noqa: RUF009 (doc() returns a field())
        "auto | true | false. Also offer the AI suggestion in the completion menu"
        " (textDocument/completion). auto: yes for clients without inline completion and for"
        " Neovim (whose inline completion is opt-in although always advertised), no for"
        " clients that show inline suggestions by default (VS Code), so the same suggestion"
        " is not shown twice.",
        default=CompletionItems.AUTO,
    )
    debounce_mode: DebounceMode = doc(  # noqa: RUF009
        "adaptive | fixed. adaptive learns the wait per document from the typing rhythm, the"
        " provider's latency and how likely a suggestion is at the cursor, within"
        " debounce_min_ms..debounce_max_ms; fixed always waits debounce_ms.",
        default=DebounceMode.ADAPTIVE,
    )
    debounce_ms: int = doc(
        "The fixed wait after a keystroke (debounce_mode = fixed), and the adaptive mode's"
        " starting point before it has seen any typing.",
        bounds=(0, 5000),
        default=150,
    )
    debounce_min_ms: int = doc("Shortest adaptive wait.", bounds=(0, 5000), default=40)
    debounce_max_ms: int = doc("Longest adaptive wait.", bounds=(0, 5000), default=600)
    timeout_ms: int = doc(
        "Deadline for the provider's answer, from sending the request to the last chunk used;"
        " past it the answer is empty and the stream is closed.",
        bounds=(100, 120_000),
        default=4000,
    )
    multiline: Multiline = doc(  # noqa: RUF009 (doc() returns a field())
        "auto | always | never: when a suggestion may span several lines.",
        default=Multiline.AUTO,
    )
    max_lines: int = doc("Most lines in a multi-line suggestion.", bounds=(1, 500), default=16)
    max_tokens: int = doc("Most tokens the provider may generate.", bounds=(1, 8192), default=160)
    temperature: float = doc("Sampling temperature.", bounds=(0.0, 2.0), default=0.2)
    alternatives: int = doc(
        "Most inline suggestions per request, for editors that cycle through them (VS Code's"
        " Alt+] / Alt+[). The others are sampled, concurrently, only when you ask explicitly"
        " (an invoked trigger); automatic requests get the ones already in memory and never"
        " cost an extra provider call.",
        bounds=(1, 3),
        default=1,
    )
    max_prefix_chars: int = doc(
        "Text before the cursor sent as context.", bounds=(0, 200_000), default=6000
    )
    max_suffix_chars: int = doc(
        "Text after the cursor sent as context.", bounds=(0, 200_000), default=2000
    )
    neighbour_files: int = doc(
        "How many other open documents contribute context, where the format takes it.",
        bounds=(0, 32),
        default=3,
    )
    neighbour_chars: int = doc(
        "Characters taken from each other document.", bounds=(0, 50_000), default=1200
    )
    max_document_chars: int = doc(
        "Documents larger than this many characters get no completions and are not offered"
        " as context for others (you are told once per document). Hand-written source files"
        " stay far below the default of 4 million; past it a file is almost always generated,"
        " minified or data.",
        bounds=(10_000, 1_000_000_000),
        default=4_000_000,
    )


@dataclass(frozen=True, kw_only=True)
class CacheSettings:
    """``[cache]``: completion answers kept in memory (L1) and on disk (L2)."""

    enabled: bool = doc("Serve repeated and typed-through completions from cache.", default=True)
    memory_mb: float = doc(
        "L1 budget: the most memory the in-memory answers may take.",
        bounds=(0.0, 4096.0),
        default=32.0,
    )
    ttl_s: int = doc("How long an answer stays in memory.", bounds=(1, 604_800), default=3600)
    disk: bool = doc("Keep answers in a sqlite file across restarts (L2).", default=True)
    disk_path: str = doc(
        "The L2 file. Empty: completions.sqlite3 under $XDG_CACHE_HOME/crucible"
        " (~/.cache/crucible).",
        default="",
    )
    disk_mb: float = doc(
        "L2 size bound; least recently used answers go first.",
        bounds=(1.0, 65_536.0),
        default=256.0,
    )
    disk_ttl_hours: float = doc(
        "How long an answer stays on disk.", bounds=(0.01, 8760.0), default=168.0
    )
    prefetch: Prefetch = doc(  # noqa: RUF009 (doc() returns a field())
        "auto | on | off: after a suggestion is shown and the provider is idle, compute the"
        " next one as if it were accepted. auto: only when every completion provider is"
        " local (loopback), since a hosted API bills each call. Either way, only while the"
        " prefetches you use (per language, recent ones weighing most) make it pay: over a"
        " third of them.",
        default=Prefetch.AUTO,
    )
    # L3: the team's Redis (or Valkey). Trusted configuration only (config/trust.py refuses
    # every key a workspace file did not get leave for): it says where suggestions come from.
    shared_url: str = doc(
        "L3, a cache the team shares: redis://host:port/db, rediss:// for TLS, or"
        " unix:///path/to/redis.sock. Empty: no L3. No password in the URL: name the"
        " variable that holds it in shared_password_env. The team's budget ([[providers]]"
        " team_* keys) uses the same Redis.",
        default="",
    )
    shared_password_env: str = doc(
        "The NAME of the environment variable holding the Redis password (or ACL user's"
        " password; the user goes in the URL). Empty: none.",
        default="",
    )
    shared_namespace: str = doc(
        "Prefix of every key Crucible writes in the shared Redis: one per team (letters,"
        " digits, '.', '_', '-').",
        default="default",
    )
    shared_timeout_ms: float = doc(
        "How long a suggestion may wait for the shared Redis; past it, it goes on without L3.",
        bounds=(1.0, 1000.0),
        default=5.0,
    )
    shared_ttl_s: int = doc(
        "How long an answer stays in the shared Redis.", bounds=(60, 2_592_000), default=86_400
    )
    shared_max_mb: float = doc(
        "The most memory Crucible's answers may take in the shared Redis (oldest go first).",
        bounds=(1.0, 1_048_576.0),
        default=256.0,
    )


@dataclass(frozen=True, kw_only=True)
class MemorySettings:
    """``[memory]``: the budget the memory supervisor keeps (``runtime/memory.py``).

    The defaults leave room for what a day of editing really holds (docs/memory.md gives the
    measurements): over the soft limit the server sheds what it can rebuild (cache, idle
    per-document state, prefetch); over the hard limit it sheds everything optional and says so.
    """

    soft_limit_mb: float = doc(
        "Resident memory above which Crucible shrinks its cache, drops state of idle"
        " documents and pauses prefetch.",
        bounds=(16.0, 65_536.0),
        default=256.0,
    )
    hard_limit_mb: float = doc(
        "Resident memory above which Crucible also clears its in-memory cache, cancels"
        " background work and tells you once. Must be above soft_limit_mb.",
        bounds=(32.0, 131_072.0),
        default=512.0,
    )
    check_interval_s: float = doc(
        "Seconds between memory readings when active (halved under pressure, up to six"
        " times longer while idle).",
        bounds=(0.5, 600.0),
        default=10.0,
    )


class OtlpProtocol(StrEnum):
    """How metrics travel to an OpenTelemetry collector (``runtime/metrics_export.py``)."""

    HTTP_PROTOBUF = "http/protobuf"  # OTLP/HTTP, the collector's port 4318; grpc is not built


@dataclass(frozen=True, kw_only=True)
class TelemetrySettings:
    """``[telemetry]``: export of crucible/status's figures to an OpenTelemetry collector
    (``runtime/metrics_export.py``, docs/metrics.md). Off unless an endpoint is configured
    here or in ``OTEL_EXPORTER_OTLP_ENDPOINT``; needs pip install 'crucible-lsp[otel]'.
    Counts, latencies, provider names and outcome labels only: never code, paths or keys."""

    otlp_endpoint: str = doc(
        "The collector's OTLP/HTTP root (http://127.0.0.1:4318); /v1/metrics is appended."
        " Empty: OTEL_EXPORTER_OTLP_ENDPOINT if set, else nothing is exported. Never taken"
        " from a workspace's crucible.toml.",
        default="",
    )
    otlp_protocol: OtlpProtocol = doc(  # noqa: RUF009 (doc() returns a field())
        "http/protobuf (OTLP over HTTP; grpc is not supported).",
        default=OtlpProtocol.HTTP_PROTOBUF,
    )
    # The OpenTelemetry SDK's OTEL_METRIC_EXPORT_INTERVAL default, 60000 ms.
    export_interval_s: float = doc("Seconds between exports.", bounds=(0.1, 3600.0), default=60.0)
    otlp_headers_env: str = doc(
        "NAME of the environment variable holding the export's headers as OTLP writes them"
        " (key=value,key2=value2, e.g. an authorization token); secrets never live in files."
        " Empty: OTEL_EXPORTER_OTLP_HEADERS. Never taken from a workspace's crucible.toml.",
        default="",
    )


@dataclass(frozen=True, kw_only=True)
class ResilienceSettings:
    """``[resilience]``: how providers serving one role are routed around failures.

    Each default says where its number comes from; the figures and their sources are in
    ``docs/reliability.md`` (cited as "reliability §n"). Library defaults there are built for
    high-traffic services; one editor makes a few provider calls a second at most, so the values
    follow the choices for an interactive, single-user server (reliability §2.6). The pool's
    numbers that are not settings are in :class:`ResilienceConstants` below;
    ``resilience/policy.py`` turns both into its policy.
    """

    # Reliability §2.5/§2.6: a first-byte deadline separate from the total; half the 3 s
    # completion deadline of §2.6, so one failover still fits. Cold prompts on a local CPU take
    # seconds: the last candidate waits until the deadline, a known slow one 2 x its p95.
    first_byte_timeout_ms: int = doc(
        "A provider that has not started answering an inline completion within this time is"
        " given up on and the next provider is tried, when there is one: the last provider"
        " left is waited for until the completion's deadline (completion.timeout_ms), and a"
        " provider whose recent first tokens were slower gets twice its usual time. A provider"
        " given up on still finishes its prompt (warming its prompt cache) and counts as slow,"
        " not failed, when it answers.",
        bounds=(50, 60_000),
        default=1500,
    )
    # Envoy outlier detection consecutive_5xx = 5 (reliability §2.1, kept in §2.6).
    failure_threshold: int = doc(
        "Consecutive failures that open a provider's circuit (it is then skipped).",
        bounds=(1, 100),
        default=5,
    )
    # Resilience4j failureRateThreshold 50 %, Hystrix errorThresholdPercentage 50 %
    # (reliability §2.1); over ResilienceConstants.breaker_window calls.
    failure_rate: float = doc(
        "Failure share over the last 20 calls (at least 10) that opens the circuit too.",
        bounds=(0.05, 1.0),
        default=0.5,
    )
    # Hystrix sleepWindow 5000 ms, Polly BreakDuration 5 s (reliability §2.1, §2.6). Envoy's
    # base ejection is 30 s; lower here because background probes keep a dead provider away
    # from user traffic anyway, and a local server the user just restarted should be back soon.
    cooldown_ms: int = doc(
        "How long an open circuit waits before letting one trial request through; doubles on"
        " each new trip, up to cooldown_max_ms. A health probe may close it sooner.",
        bounds=(100, 600_000),
        default=5000,
    )
    # Resilience4j waitDurationInOpenState 60 s (reliability §2.1); below Envoy's 300 s cap for
    # the same reason as the base. Staying closed this long also resets the growth.
    cooldown_max_ms: int = doc("The longest cooldown.", bounds=(100, 3_600_000), default=60_000)
    # The Tail at Scale (reliability §2.3); off by default (reliability §2.6): it costs calls.
    hedging: bool = doc(
        "When the first provider has not answered by its recent p95 first-byte time, also ask"
        " the next one; the first answer wins and the other is cancelled. Costs extra calls.",
        default=False,
    )
    # The Stainless SDKs' DEFAULT_MAX_RETRIES 2, i.e. the SRE book's "at most 3 attempts" and
    # AWS standard mode's max_attempts 3 (reliability §2.2).
    max_retries: int = doc(
        "Retries of the same provider for chat requests (inline completions fail over"
        " instead), with exponential backoff and full jitter, honouring Retry-After.",
        bounds=(0, 10),
        default=2,
    )
    # Envoy retry_budget budget_percent 20 % (reliability §2.1, §2.6).
    retry_budget: float = doc(
        "Retries allowed as a share of requests (over 10 s), so failures cannot become a"
        " retry storm.",
        bounds=(0.0, 1.0),
        default=0.2,
    )
    # An editor rarely has more streams worth running at once (reliability §3: a local server
    # often serves one). Each provider's own max_connections caps it further: more would only
    # queue inside httpx, unseen; ProviderSettings.max_connections (4) is also where the
    # adaptive limit starts.
    max_concurrency: int = doc(
        "Most requests in flight per provider, never above that provider's max_connections;"
        " the limit adapts below it (it halves on HTTP 429 and shrinks when latency climbs)."
        " Queued inline completions go before background work.",
        bounds=(1, 256),
        default=8,
    )
    # One probe per open window (reliability §2.4, tests RES-01/RES-02).
    health_probes: bool = doc(
        "While a provider's circuit is open, probe it in the background so it comes back"
        " without a user request having to fail first.",
        default=True,
    )


@dataclass(frozen=True, kw_only=True)
class ResilienceConstants:
    """The provider pool's numbers that are not settings: researched figures no user has had a
    reason to change. They live here so that every default Crucible runs with has one home;
    they are not part of :class:`Settings`, so no file sets them. Sources: reliability §n.
    """

    # Hystrix requestVolumeThreshold 20 (reliability §2.1); a count window, because one
    # editor's traffic comes in bursts that a time window would misread.
    breaker_window: int = 20
    # Reliability §2.6 ("at least 10"); Resilience4j's 100 is for servers.
    breaker_minimum_calls: int = 10
    # "x 2 per re-open" (reliability §2.6; Envoy multiplies its ejection time per ejection).
    cooldown_multiplier: float = 2.0
    # "+/- 10 % jitter" (reliability §2.6), so members that tripped together are not probed
    # in lockstep.
    cooldown_jitter: float = 0.1
    # Full jitter with the AWS SDK's base delay 100 ms (reliability §2.2), capped at 2 s
    # (reliability §2.6): random(0, min(cap, base * 2^(n-1))) before retry n.
    retry_base_s: float = 0.1
    retry_cap_s: float = 2.0
    # A Retry-After up to this is waited out; the SDKs honour up to 60 s with a 600 s timeout
    # (reliability §2.2), a chat deadline here is 30 s, so past a third of it another provider
    # is better. Longer parks the provider (reliability §2.6).
    retry_after_cap_s: float = 10.0
    # The longest a Retry-After parks a provider: Envoy max_ejection_time 300 s (§2.1).
    park_cap_s: float = 300.0
    # Envoy retry_budget's minimum of 3 as a Finagle-style floor of 0.3 retries/s over the
    # Hystrix 10 s rolling window (reliability §2.1, §2.6).
    budget_min_per_second: float = 0.3
    budget_window_s: float = 10.0
    # AIMD (TCP congestion avoidance, RFC 5681; reliability has no AIMD anchor): Ollama's
    # OLLAMA_NUM_PARALLEL defaults to 1 (reliability §3), so the limit must reach 1; +1 per
    # window of fast successes; halve on 429; x 0.9 when the first byte took over 2 x its
    # baseline (an EWMA weighing the last ~20 calls), since latency is a noisier signal.
    concurrency_minimum: int = 1
    concurrency_increase: float = 1.0
    concurrency_decrease: float = 0.5
    concurrency_slow_decrease: float = 0.9
    concurrency_slow_factor: float = 2.0
    concurrency_baseline_weight: float = 0.05
    # Chat (code actions) deadline 30 s (reliability §2.6); a third of it for the first byte,
    # room for a cold model load (reliability §3) and two failovers.
    chat_deadline_s: float = 30.0
    chat_first_byte_s: float = 10.0
    # A provider known to be slow gets 2 x its recent first-byte p95 (with at least 3
    # samples) before it is cut; the same factor marks one silent for longer as failed.
    first_byte_factor: float = 2.0
    first_byte_min_samples: int = 3
    # A cut attempt runs on to its first byte for up to 15 s (warming the server's prompt
    # cache): a cold model load (Ollama loads a model on first use, reliability §3) and a long
    # prompt on two CPU cores.
    warm_limit_s: float = 15.0
    # Hedge after the member's p95 first byte (about 5 % extra load; The Tail at Scale,
    # reliability §2.3), at least 100 ms, and only with 10 samples behind that p95.
    hedge_percentile: float = 0.95
    hedge_floor_s: float = 0.1
    hedge_min_samples: int = 10
    # httpx's default inactivity timeout (reliability §2.3).
    probe_timeout_s: float = 5.0
    # The recent latency samples kept per provider for its percentiles.
    latency_window: int = 50


@dataclass(frozen=True, kw_only=True)
class PrivacySettings:
    """``[privacy]``: what never reaches a provider (``context/privacy.py``,
    ``context/redaction.py``)."""

    exclude: tuple[str, ...] = doc(
        "Files that get no completions and are never sent as context, in gitignore syntax"
        " (relative to the workspace root), on top of the built-in list (.env files, private"
        " keys, credential files, lock and minified files) and the workspace's"
        " .crucibleignore. A pattern can only add exclusions: `!` re-includes only what this"
        " list excluded.",
        default=(),
    )
    redact: bool = doc(
        "Replace obvious secrets (API tokens, AWS keys, passwords in assignments and URLs,"
        " private-key blocks) in every prompt with <redacted> before it is sent.",
        default=True,
    )


class ActionScope(StrEnum):
    """What a custom code action rewrites (``[[code_actions.custom]]``)."""

    SELECTION = "selection"  # the selected lines; offered on a non-empty selection
    DIAGNOSTIC = "diagnostic"  # the lines of the diagnostics touching the range
    FILE = "file"  # the whole document; offered everywhere


@dataclass(frozen=True, kw_only=True)
class CustomActionSettings:
    """One user-defined code action; ``[[code_actions.custom]]`` in TOML."""

    title: str = doc('Shown in the editor\'s menu after "Crucible: ".', default="")
    kind: str = doc(
        "LSP code action kind: quickfix, refactor, refactor.rewrite, refactor.extract,"
        " refactor.inline, source, or one of those followed by .something.",
        default="refactor.rewrite",
    )
    prompt: str = doc(
        "What to ask the model. Placeholders: {code} (the target), {language}, {file}"
        " (relative to the workspace), {diagnostics}, {before} and {after} (the surrounding"
        " text). The answer must be the replacement in one fenced code block; the prompt"
        " says so.",
        default="",
    )
    scope: ActionScope = doc(  # noqa: RUF009 (doc() returns a field())
        "selection | diagnostic | file: what the action rewrites and when it is offered.",
        default=ActionScope.SELECTION,
    )


@dataclass(frozen=True, kw_only=True)
class CodeActionsSettings:
    """``[code_actions]``: AI quick fixes and rewrites (``actions/``)."""

    enabled: bool = doc("Offer Crucible's code actions.", default=True)
    timeout_ms: int = doc(
        "Deadline of one resolve (the model writing an edit), retries and failover included.",
        bounds=(1000, 600_000),
        default=60_000,
    )
    context_lines: int = doc(
        "Lines before and after the target sent with it as context.",
        bounds=(0, 500),
        default=40,
    )
    custom: tuple[CustomActionSettings, ...] = doc(
        "User-defined actions, [[code_actions.custom]] tables (title, kind, prompt, scope).",
        default=(),
    )


@dataclass(frozen=True, kw_only=True)
class HoverSettings:
    """``[hover]``: explanations of diagnostics on hover (``hover/``)."""

    enabled: bool = doc(
        "Explain the diagnostic under the mouse (source, code, message, then the chat"
        " model's explanation and how to fix it).",
        default=True,
    )
    timeout_ms: int = doc(
        "How long a hover waits for the explanation; past it the hover shows the diagnostic"
        " and 'explanation on its way, hover again' while it is generated in the background.",
        bounds=(100, 60_000),
        default=2500,
    )
    prefetch: Prefetch = doc(  # noqa: RUF009 (doc() returns a field())
        "auto | on | off: explain a document's errors (at most 3 per document) as soon as"
        " its diagnostics arrive, so the first hover is instant. auto: only when every chat"
        " provider is local (loopback), since a hosted API bills each call.",
        default=Prefetch.AUTO,
    )
    explain_code: bool = doc(
        "Hovering code with no diagnostic explains that code (a provider call per new"
        " spot). Off: such a hover makes no provider call and shows nothing.",
        default=False,
    )


@dataclass(frozen=True, kw_only=True)
class ReviewSettings:
    """``[review]``: an AI review of the changed functions on save (``review/``)."""

    enabled: bool = doc(
        "On save, review the functions you changed with the chat model and show its findings"
        " as diagnostics (source crucible), each with a suggested fix. Off by default: every"
        " save with changes costs provider calls.",
        default=False,
    )
    timeout_ms: int = doc(
        "Deadline of one function's review.", bounds=(1000, 300_000), default=30_000
    )
    debounce_ms: int = doc(
        "Wait after a save before reviewing; a later save of the same file restarts it.",
        bounds=(0, 60_000),
        default=1500,
    )
    max_functions: int = doc(
        "Most functions (or changed regions, outside Python) reviewed per save.",
        bounds=(1, 50),
        default=5,
    )
    max_findings: int = doc("Most findings shown per file.", bounds=(1, 100), default=10)


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The whole configuration."""

    providers: tuple[ProviderSettings, ...] = doc(
        "LLM endpoints, tried in order of priority. Default: Ollama on 127.0.0.1:11434.",
        default=(ProviderSettings(),),
    )
    completion: CompletionSettings = doc(  # noqa: RUF009 (doc() returns a field())
        "Inline completion settings.", default_factory=CompletionSettings
    )
    cache: CacheSettings = doc(  # noqa: RUF009 (doc() returns a field())
        "Response cache settings.", default_factory=CacheSettings
    )
    resilience: ResilienceSettings = doc(  # noqa: RUF009 (doc() returns a field())
        "Failover, circuit breakers, retries and concurrency limits.",
        default_factory=ResilienceSettings,
    )
    # Read from the user's own configuration only: a workspace crucible.toml cannot trust
    # itself (config/trust.py).
    trust_workspace_config: bool = doc(
        "Let the crucible.toml of EVERY workspace set anything a user file can (providers,"
        " keys, limits), except paths outside Crucible's cache directory. Only your own"
        " configuration may set it: user file, --config, the editor's settings.",
        default=False,
    )
    trusted_workspaces: tuple[str, ...] = doc(
        "Workspace roots (absolute paths, ~ expands) whose crucible.toml is trusted as"
        " trust_workspace_config trusts every one; a subdirectory of a listed path is trusted"
        " too, and symlinks are resolved on both sides. Only your own configuration may set"
        " it.",
        default=(),
    )
    privacy: PrivacySettings = doc(  # noqa: RUF009 (doc() returns a field())
        "Files never sent, and redaction of secrets in prompts.",
        default_factory=PrivacySettings,
    )
    hover: HoverSettings = doc(  # noqa: RUF009 (doc() returns a field())
        "Hover explanations of diagnostics.", default_factory=HoverSettings
    )
    review: ReviewSettings = doc(  # noqa: RUF009 (doc() returns a field())
        "AI review on save.", default_factory=ReviewSettings
    )
    code_actions: CodeActionsSettings = doc(  # noqa: RUF009 (doc() returns a field())
        "AI code actions: quick fixes, rewrites, custom actions.",
        default_factory=CodeActionsSettings,
    )
    memory: MemorySettings = doc(  # noqa: RUF009 (doc() returns a field())
        "The memory budget Crucible keeps.", default_factory=MemorySettings
    )
    telemetry: TelemetrySettings = doc(  # noqa: RUF009 (doc() returns a field())
        "Metrics exported to an OpenTelemetry collector (off by default).",
        default_factory=TelemetrySettings,
    )

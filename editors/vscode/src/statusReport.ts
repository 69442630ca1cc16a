/**
 * `crucible/status` (the server's JSON) -> a short Markdown page a person can read: overall
 * state, each provider with its health and latency, cache hit rate, requests, memory.
 * Tolerant of missing fields (the contract only ever adds fields). Pure.
 */

type Json = Record<string, unknown>;

export function renderStatusReport(status: unknown): string {
  const root = asObject(status);
  const overall = asObject(root.status);
  const lines: string[] = [
    `# Crucible ${text(root.version)}`,
    "",
    `**State:** ${text(overall.state)} - ${text(overall.message)}`,
    `**Uptime:** ${duration(root.uptime_s)}`,
    "",
    "## Providers",
    "",
  ];
  const providers = Array.isArray(root.providers) ? root.providers.map(asObject) : [];
  if (providers.length === 0) lines.push("(none configured)");
  else {
    lines.push("| name | kind | model | health | circuit | calls | failures | latency p50 / p95 | first token p50 |");
    lines.push("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (const p of providers) {
      const latency = asObject(p.latency_ms);
      const firstByte = asObject(p.first_byte_ms);
      lines.push(
        `| ${cells([p.name, p.kind, p.model, p.health, p.state, p.calls, p.failures])} | ` +
          `${ms(latency.p50)} / ${ms(latency.p95)} | ${ms(firstByte.p50)} |`,
      );
    }
    for (const p of providers) {
      if (typeof p.last_error === "string" && p.last_error !== "") {
        lines.push("", `Last error of ${text(p.name)}: ${p.last_error}`);
      }
    }
  }
  const cache = asObject(root.cache);
  const hits = num(cache.hits);
  const misses = num(cache.misses);
  const lookups = hits + misses;
  const rate = lookups === 0 ? "-" : `${((100 * hits) / lookups).toFixed(0)} %`;
  const requests = asObject(root.requests);
  const upstream = asObject(root.upstream);
  const memory = asObject(root.memory);
  lines.push(
    "",
    "## Cache",
    "",
    `Hit rate ${rate} (${hits} hits, ${misses} misses); in memory ${num(asObject(cache.l1).entries)} answers, on disk ${num(asObject(cache.l2).entries)}.`,
    "",
    "## Requests",
    "",
    `${num(requests.total)} inline requests; ${num(upstream.calls)} provider calls, ${num(upstream.errors)} failed.`,
    "",
    "## Memory",
    "",
    `${text(memory.rss_mb)} MB resident; pressure ${text(memory.pressure)}.`,
    "",
  );
  return lines.join("\n");
}

function asObject(value: unknown): Json {
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Json) : {};
}

function text(value: unknown): string {
  if (value === undefined || value === null) return "-";
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return JSON.stringify(value);
}

function cells(values: readonly unknown[]): string {
  return values.map((value) => text(value).replace(/\|/g, "\\|")).join(" | ");
}

function num(value: unknown): number {
  return typeof value === "number" ? value : 0;
}

function ms(value: unknown): string {
  return typeof value === "number" ? `${value.toFixed(0)} ms` : "-";
}

function duration(value: unknown): string {
  if (typeof value !== "number") return "-";
  const seconds = Math.round(value);
  return seconds < 120 ? `${seconds} s` : `${Math.round(seconds / 60)} min`;
}

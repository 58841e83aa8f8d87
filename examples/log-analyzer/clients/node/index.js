// A client of the log-analyzer service for Node.js 18+, with no dependencies: the built-in `fetch`, a timeout per
// attempt, and retries with backoff, honouring `Retry-After`. GETs are retried after network errors, timeouts, 408,
// 429, 502, 503 and 504. The analyze calls (POSTs, which the service learns from) are retried only when the service
// cannot have seen the line: the connection was refused, or the answer was 429 or 503; a timeout or a 502/504
// after the request was sent is thrown, so a line is never learned twice by the client's doing.

/**
 * @typedef {object} ClientOptions
 * @property {string} baseUrl The service's address, e.g. `http://127.0.0.1:5000`.
 * @property {string} [token] The service's `API_TOKEN`, sent as a bearer token.
 * @property {number} [timeoutMs=5000] How long one attempt may take.
 * @property {number} [retries=2] Attempts after the first, for retryable failures only.
 * @property {number} [retryDelayMs=200] First wait between attempts; doubled after each.
 * @property {typeof fetch} [fetch] The `fetch` to use (tests).
 */

/**
 * @typedef {object} SecondOpinion
 * @property {string} provider
 * @property {number} score
 * @property {string} category
 * @property {string} reason
 */

/**
 * @typedef {object} LogAnswer
 * @property {*} log_id The request's `log_id`.
 * @property {number} anomaly_score In 0..1.
 * @property {boolean} is_anomaly `anomaly_score > ANOMALY_THRESHOLD`.
 * @property {string} model_name
 * @property {number|null} template_id
 * @property {string} template
 * @property {string[]} reasons Why, strongest first.
 * @property {string|null} [severity]
 * @property {boolean} [new_template]
 * @property {string} [time]
 * @property {SecondOpinion} [second_opinion]
 */

/**
 * @typedef {object} Refusal A batch item the service refused.
 * @property {*} log_id
 * @property {string} error
 */

/**
 * @typedef {object} LogItem
 * @property {*} log_id
 * @property {string} log_text
 * @property {string} [timestamp] RFC 3339, when the line's header has no time.
 */

/**
 * @typedef {object} Health
 * @property {string} status
 * @property {boolean} model_loaded
 * @property {string} model_name
 * @property {number} threshold
 * @property {number} templates
 * @property {number} lines_seen
 */

/** An answer other than 2xx, or a request that could not complete. */
export class LogAnalyzerError extends Error {
  /**
   * @param {string} message
   * @param {number|null} status The HTTP status, or null when no answer came.
   * @param {*} [body] The answer's JSON body, if any.
   */
  constructor(message, status, body) {
    super(message);
    this.name = "LogAnalyzerError";
    this.status = status;
    this.body = body;
  }
}

const RETRYABLE = new Set([408, 429, 502, 503, 504]);
/** Statuses after which a POST certainly was not processed. */
const RETRYABLE_POST = new Set([429, 503]);
/** Network errors raised before a request reached the service. */
const NOT_SENT = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN"]);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class LogAnalyzerClient {
  /** @param {ClientOptions} options */
  constructor(options) {
    if (!options || typeof options.baseUrl !== "string") throw new TypeError("baseUrl is required");
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.token = options.token;
    this.timeoutMs = options.timeoutMs ?? 5000;
    this.retries = options.retries ?? 2;
    this.retryDelayMs = options.retryDelayMs ?? 200;
    this.fetch = options.fetch ?? globalThis.fetch;
  }

  /**
   * Scores one line, then the service learns it.
   * @param {*} logId Echoed back.
   * @param {string} logText The line.
   * @param {{timestamp?: string}} [extra]
   * @returns {Promise<LogAnswer>}
   */
  analyzeLog(logId, logText, extra = {}) {
    return this.#request("POST", "/analyze-log", { log_id: logId, log_text: logText, ...extra });
  }

  /**
   * Scores several lines in order; a refused item comes back as `{log_id, error}` in its place.
   * @param {LogItem[]} items
   * @returns {Promise<Array<LogAnswer|Refusal>>}
   */
  analyzeBatch(items) {
    return this.#request("POST", "/analyze-batch", items);
  }

  /** @returns {Promise<Health>} */
  health() {
    return this.#request("GET", "/health");
  }

  /**
   * A page of templates, most frequent first.
   * @param {{page?: number, pageSize?: number}} [options]
   */
  templates({ page = 1, pageSize = 50 } = {}) {
    return this.#request("GET", `/templates?page=${page}&page_size=${pageSize}`);
  }

  async #request(method, path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    let delay = this.retryDelayMs;
    for (let attempt = 0; ; attempt++) {
      const last = attempt >= this.retries;
      let response;
      try {
        response = await this.fetch(`${this.baseUrl}${path}`, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(this.timeoutMs),
        });
      } catch (e) {
        const what = e && e.name === "TimeoutError" ? `timed out after ${this.timeoutMs} ms` : String(e && e.cause ? e.cause : e);
        const unsent = NOT_SENT.has(e && e.cause && e.cause.code);
        if (last || (method === "POST" && !unsent)) throw new LogAnalyzerError(`${method} ${path}: ${what}`, null);
        await sleep(delay);
        delay *= 2;
        continue;
      }
      const text = await response.text();
      let json;
      try {
        json = text ? JSON.parse(text) : undefined;
      } catch {
        json = undefined;
      }
      if (response.ok) return json;
      const retryable = method === "POST" ? RETRYABLE_POST : RETRYABLE;
      if (!last && retryable.has(response.status)) {
        const after = Number(response.headers.get("retry-after"));
        await sleep(Number.isFinite(after) && after > 0 ? after * 1000 : delay);
        delay *= 2;
        continue;
      }
      const reason = json && typeof json.error === "string" ? json.error : text || response.statusText;
      throw new LogAnalyzerError(`${method} ${path}: ${response.status} ${reason}`, response.status, json);
    }
  }
}

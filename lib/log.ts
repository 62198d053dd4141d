// Where llmux writes what went wrong: the Logger contract every piece takes, and its default.

/** Where llmux writes what went wrong. `console` fits; so does a pino or winston logger via a small adapter. */
export interface Logger {
  /** One structured event; `fields` never holds a credential. */
  error(message: string, fields: Record<string, unknown>): void;
}

/** The default logger: one JSON line per event on stderr. */
export const stderrLogger: Logger = {
  error(message, fields) {
    process.stderr.write(`${JSON.stringify({ level: 'error', msg: message, ...fields })}\n`);
  },
};

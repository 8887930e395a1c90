/**
 * What every request plane answers before a request runs: the ACK texts (as the 1.6.1 runtime
 * words them where it has the case; a 1.6.1 caller reads them the same from a TCP ACK frame and
 * from a NATS reply) and the in-flight limit, logged once per episode rather than per request.
 */
import type { Logger } from "../../ops/log.ts";
import type { Dispatcher } from "../dispatcher.ts";

export const ACK = {
  unknownEndpoint: (path: string): string => `Server unavailable: unknown endpoint ${path}`,
  invalidPath: "Invalid endpoint path",
  tooLarge: (total: number, max: number): string =>
    `Read error: message too large: ${total} bytes (max: ${max} bytes)`,
  overloaded: (inFlight: number, max: number): string =>
    `Server overloaded: ${inFlight} requests in flight (limit ${max})`,
} as const;

export class InFlightLimit {
  #max: number;
  #logger: Logger;
  #overloaded = false;

  constructor(max: number, logger: Logger) {
    this.#max = max;
    this.#logger = logger;
  }

  /**
   * The `Server overloaded:` ACK when the dispatcher is at the limit; `undefined` admits.
   * `admitted`: requests let in but not dispatched yet (they count as in flight).
   */
  refusal(dispatcher: Dispatcher, admitted = 0): string | undefined {
    const inFlight = dispatcher.inFlight + admitted;
    if (inFlight >= this.#max) {
      if (!this.#overloaded) {
        this.#overloaded = true;
        this.#logger.warn("too many requests in flight; shedding load", { limit: this.#max });
      }
      return ACK.overloaded(inFlight, this.#max);
    }
    if (this.#overloaded) {
      this.#overloaded = false;
      this.#logger.info("requests in flight below the limit again", { limit: this.#max });
    }
    return undefined;
  }
}

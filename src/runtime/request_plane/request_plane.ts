/** How requests reach this process; one adapter per `DYN_REQUEST_PLANE`. */
import type { Dispatcher } from "../dispatcher.ts";

export interface EndpointPath {
  namespace: string;
  component: string;
  endpoint: string;
}

export interface RequestPlane {
  /** Where callers reach us (for the ready log). */
  readonly address: string;
  /** False while the plane cannot take requests (e.g. the NATS connection is down). */
  readonly healthy: boolean;
  /** Routes an endpoint's request path(s) to the dispatcher; returns the discovery `transport`. */
  route(dispatcher: Dispatcher, path: EndpointPath, instanceHex: string): Record<string, string>;
  serve(dispatcher: Dispatcher): void;
  /** Resolves once the plane takes requests on every routed path (before discovery names them). */
  flush(): Promise<void>;
  close(): Promise<void>;
}

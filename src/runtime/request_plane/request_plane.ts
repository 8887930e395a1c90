/** How requests reach this process; one adapter per `DYN_REQUEST_PLANE`. */
import type { Dispatcher } from "../dispatcher.ts";

export interface EndpointPath {
  namespace: string;
  component: string;
  endpoint: string;
}

export interface RequestPlane {
  /** Routes an endpoint's request path(s) to the dispatcher; returns the discovery `transport`. */
  route(dispatcher: Dispatcher, path: EndpointPath, instanceHex: string): Record<string, string>;
  serve(dispatcher: Dispatcher): void;
  close(): Promise<void>;
}

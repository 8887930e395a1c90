/**
 * Hosts a Dynamo component's endpoints: one discovery backend, one request plane, one
 * dispatcher. All endpoints are registered concurrently, and `start` resolves only when every
 * record is visible to callers and the request plane listens.
 */
import type { RuntimeSettings } from "../config/env.ts";
import { ConfigError, DiscoveryError, ProtocolError } from "../errors.ts";
import type { Logger } from "../ops/log.ts";
import { instanceHex } from "./codec/json.ts";
import type { PayloadCodec } from "./codec/payload_codec.ts";
import type { ControlHeader } from "./control_header.ts";
import type { Discovery, EndpointRecord } from "./discovery/discovery.ts";
import { EtcdDiscovery } from "./discovery/etcd.ts";
import { FileDiscovery } from "./discovery/file.ts";
import { KubernetesDiscovery } from "./discovery/kubernetes.ts";
import type { WorkerMetadataApi } from "./discovery/worker_metadata.ts";
import { Dispatcher, type ResponseOpener } from "./dispatcher.ts";
import type { Endpoint, ResponseSink } from "./endpoint.ts";
import { NatsRequestPlane } from "./request_plane/nats.ts";
import type { RequestPlane } from "./request_plane/request_plane.ts";
import { TcpRequestPlane } from "./request_plane/tcp.ts";
import { CALL_HOME_TRANSPORT, openCallHome, parseCallHomeInfo } from "./response_plane/call_home.ts";

export interface HostOptions {
  namespace: string;
  component: string;
  endpoints: Endpoint[];
  runtime: RuntimeSettings;
  logger: Logger;
  /** The Kubernetes API port of the `kubernetes` discovery backend. */
  workerMetadata?: WorkerMetadataApi;
}

export interface EndpointHost {
  readonly instanceId: bigint;
  readonly address: string;
  readonly discovery: Discovery;
  readonly dispatcher: Dispatcher;
  readonly records: EndpointRecord[];
  /** The request plane (`healthy` feeds readiness). */
  readonly plane: RequestPlane;
  /**
   * Deregisters first (callers stop routing here), stops taking frames, runs `afterDeregister`,
   * drains in-flight requests for up to `graceMs`, then closes everything.
   */
  stop(graceMs: number, afterDeregister?: () => void): Promise<void>;
}

export async function openDiscovery(
  runtime: RuntimeSettings,
  logger: Logger,
  workerMetadata?: WorkerMetadataApi,
): Promise<Discovery> {
  switch (runtime.discovery) {
    case "etcd":
      return await EtcdDiscovery.connect(runtime.etcd, logger);
    case "file":
      return new FileDiscovery(runtime.fileKv, logger);
    case "kubernetes":
      if (!runtime.kube || !workerMetadata) {
        throw new DiscoveryError("kubernetes discovery needs the pod identity and a Kubernetes API client");
      }
      return new KubernetesDiscovery({ identity: runtime.kube, api: workerMetadata, logger });
  }
}

/** Opens response streams; `writeTimeoutMs` bounds each connect and write to a caller. */
export function responseOpener(writeTimeoutMs: number): ResponseOpener {
  return (header: ControlHeader, codec: PayloadCodec, logger: Logger): Promise<ResponseSink> => {
    const { transport, info } = header.connection_info;
    if (transport === CALL_HOME_TRANSPORT) {
      return openCallHome(parseCallHomeInfo(info, header.id), codec, logger, writeTimeoutMs);
    }
    return Promise.reject(new ProtocolError(`unsupported response transport "${transport}"`));
  };
}

/** The plane `DYN_REQUEST_PLANE` names; the NATS one is connected (with start-up retries). */
export async function openRequestPlane(runtime: RuntimeSettings, logger: Logger): Promise<RequestPlane> {
  if (runtime.requestPlane === "nats") {
    if (!runtime.nats) throw new ConfigError("DYN_REQUEST_PLANE=nats needs the NATS connection settings");
    return await NatsRequestPlane.connect({ settings: runtime.nats, bounds: runtime.tcp, logger });
  }
  return TcpRequestPlane.listen(runtime.tcp, logger);
}

export async function startEndpointHost(options: HostOptions): Promise<EndpointHost> {
  const { logger } = options;
  const discovery = await openDiscovery(options.runtime, logger, options.workerMetadata);
  let plane: RequestPlane;
  try {
    plane = await openRequestPlane(options.runtime, logger);
  } catch (error) {
    await discovery.close();
    throw error;
  }
  const dispatcher = new Dispatcher(
    options.endpoints,
    responseOpener(options.runtime.tcp.writeTimeoutMs),
    logger,
  );
  // Called again with a new id when etcd discovery re-registers under a new lease; the old
  // routes stay, so callers still holding the old record are served until they move on.
  // Memoized per id, so the routes made (and flushed) before the first registration are the
  // ones registered.
  const built = new Map<bigint, EndpointRecord[]>();
  const records = (instanceId: bigint): EndpointRecord[] => {
    let made = built.get(instanceId);
    if (!made) {
      made = options.endpoints.map((endpoint) => {
        const path = { namespace: options.namespace, component: options.component, endpoint: endpoint.name };
        return { ...path, instanceId, transport: plane.route(dispatcher, path, instanceHex(instanceId)) };
      });
      built.set(instanceId, made);
    }
    return made;
  };
  plane.serve(dispatcher);
  try {
    // A NATS subscription must be in place at the server before any caller can see the record.
    records(discovery.instanceId);
    await plane.flush();
    await discovery.register(records);
  } catch (error) {
    await plane.close();
    await discovery.close();
    throw error;
  }

  let stopped: Promise<void> | undefined;
  return {
    get instanceId() {
      return discovery.instanceId;
    },
    address: plane.address,
    discovery,
    dispatcher,
    get records() {
      return discovery.records;
    },
    plane,
    stop(graceMs: number, afterDeregister?: () => void) {
      stopped ??= (async () => {
        await discovery.deregister();
        await plane.close();
        afterDeregister?.();
        await dispatcher.drain(graceMs);
        await discovery.close();
      })();
      return stopped;
    },
  };
}

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
  /**
   * Start unregistered (a leader-elected standby): the request plane listens but knows no
   * route, so a frame is answered `Server unavailable`; `register()` publishes later.
   */
  standby?: boolean;
}

export interface EndpointHost {
  /** The instance id of the current registration (`undefined` while unregistered). */
  readonly instanceId: bigint | undefined;
  readonly address: string;
  /** The discovery backend of the current registration (`undefined` while unregistered). */
  readonly discovery: Discovery | undefined;
  /** Registered now and the registration is known to be alive. */
  readonly healthy: boolean;
  readonly registered: boolean;
  /** Rejects when a registration is lost for good (etcd with exit-on-loss). */
  readonly lost: Promise<never>;
  readonly dispatcher: Dispatcher;
  readonly records: EndpointRecord[];
  /** The request plane (`healthy` feeds readiness). */
  readonly plane: RequestPlane;
  /**
   * Registers every endpoint under a fresh discovery registration (a new etcd lease, a new
   * file id, the pod's CR applied again); routes frames again. No-op when registered.
   */
  register(): Promise<void>;
  /**
   * Stops routing (new frames: `Server unavailable`), then withdraws the registration. Requests
   * in flight keep running. No-op when unregistered.
   */
  deregister(): Promise<void>;
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
    // Loaded only for the NATS plane: the client is resident memory a TCP deployment never uses.
    const { NatsRequestPlane } = await import("./request_plane/nats.ts");
    return await NatsRequestPlane.connect({ settings: runtime.nats, bounds: runtime.tcp, logger });
  }
  return TcpRequestPlane.listen(runtime.tcp, logger);
}

export async function startEndpointHost(options: HostOptions): Promise<EndpointHost> {
  const { logger } = options;
  const plane = await openRequestPlane(options.runtime, logger);
  const dispatcher = new Dispatcher(
    options.endpoints,
    responseOpener(options.runtime.tcp.writeTimeoutMs),
    logger,
  );
  // Called again with a new id when etcd discovery re-registers under a new lease; the old
  // routes stay, so callers still holding the old record are served until they move on.
  // Routes first, then a flush: a NATS subscription must be in place at the server before any
  // caller can see a record naming it (routing the same id again is a no-op).
  const records = async (instanceId: bigint): Promise<EndpointRecord[]> => {
    const built = options.endpoints.map((endpoint) => {
      const path = { namespace: options.namespace, component: options.component, endpoint: endpoint.name };
      return { ...path, instanceId, transport: plane.route(dispatcher, path, instanceHex(instanceId)) };
    });
    await plane.flush();
    return built;
  };
  plane.serve(dispatcher);

  let discovery: Discovery | undefined;
  let stopped: Promise<void> | undefined;
  let fail!: (error: unknown) => void;
  const lost = new Promise<never>((_, reject) => (fail = reject));
  lost.catch(() => {});
  // Registrations and withdrawals run one at a time, in the order asked.
  let chain: Promise<void> = Promise.resolve();
  const serial = (step: () => Promise<void>): Promise<void> => {
    const next = chain.then(step);
    chain = next.catch(() => {});
    return next;
  };
  const register = () =>
    serial(async () => {
      if (discovery || stopped) return;
      const opened = await openDiscovery(options.runtime, logger, options.workerMetadata);
      try {
        await opened.register(records);
      } catch (error) {
        dispatcher.clearRoutes();
        await opened.close();
        throw error;
      }
      opened.lost.catch((error) => {
        if (discovery === opened) fail(error);
      });
      discovery = opened;
    });
  const deregister = () =>
    serial(async () => {
      const current = discovery;
      if (!current) return;
      discovery = undefined;
      dispatcher.clearRoutes();
      await current.deregister();
      await current.close();
    });

  if (!options.standby) {
    try {
      await register();
    } catch (error) {
      await plane.close();
      throw error;
    }
  } else if (options.runtime.discovery === "kubernetes" && options.runtime.kube && options.workerMetadata) {
    // Never fails the start: a warning names what could not be withdrawn.
    await new KubernetesDiscovery({ identity: options.runtime.kube, api: options.workerMetadata, logger })
      .withdrawPredecessor();
  }

  return {
    get instanceId() {
      return discovery?.instanceId;
    },
    address: plane.address,
    get discovery() {
      return discovery;
    },
    get healthy() {
      return discovery?.healthy === true;
    },
    get registered() {
      return discovery !== undefined;
    },
    lost,
    dispatcher,
    get records() {
      return discovery?.records ?? [];
    },
    plane,
    register,
    deregister,
    stop(graceMs: number, afterDeregister?: () => void) {
      stopped ??= (async () => {
        let current: Discovery | undefined;
        // Frames keep being served while the records are withdrawn (a caller that still picks
        // this instance gets an answer), then the plane stops taking them.
        await serial(async () => {
          current = discovery;
          discovery = undefined;
          await current?.deregister();
        });
        await plane.close();
        afterDeregister?.();
        await dispatcher.drain(graceMs);
        await current?.close();
      })();
      return stopped;
    },
  };
}

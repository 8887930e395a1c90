/** The Kubernetes port: credentials → one client → the scaler the core talks to. */
import type { KubeSettings } from "../config/config.ts";
import type { Logger } from "../ops/log.ts";
import { KubeClient } from "./client.ts";
import { loadCredentials } from "./credentials.ts";
import { type ApiVersions, discoverVersions } from "./resources.ts";
import { KubeScaler } from "./scaler.ts";

export { KubeClient } from "./client.ts";
export { KubeScaler } from "./scaler.ts";

export interface KubeConnector {
  client: KubeClient;
  scaler: KubeScaler;
  source: string;
  close(): void;
}

export async function connectKubernetes(
  settings: KubeSettings,
  getEnv: (name: string) => string | undefined,
  logger: Logger,
): Promise<KubeConnector> {
  const credentials = await loadCredentials({ serviceAccountDir: settings.serviceAccountDir, getEnv });
  const client = new KubeClient(credentials, logger);
  let versions: Promise<ApiVersions> | undefined;
  const scaler = new KubeScaler({
    client,
    logger,
    blockingTimeoutMs: settings.blockingTimeoutSeconds * 1000,
    // Discovered once, on first use; a failure is not cached so the next request retries.
    versions: () =>
      versions ??= discoverVersions(client, settings.dgdApiVersion).catch((error) => {
        versions = undefined;
        throw error;
      }),
  });
  return { client, scaler, source: credentials.source, close: () => client.close() };
}

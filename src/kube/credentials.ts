/**
 * Kubernetes credentials, read directly (no client library loader, which needs unrestricted
 * env access): in a cluster the service-account `token`, `ca.crt` and `namespace` files plus
 * `KUBERNETES_SERVICE_HOST`/`PORT`; outside, the current context of `KUBECONFIG` (token or
 * client certificate; exec plugins are not supported). The token is re-read when the cached
 * copy is older than 60 s (projected tokens rotate) and on demand after a 401.
 */
import { ConfigError } from "../errors.ts";

export const TOKEN_MAX_AGE_MS = 60_000;

export interface KubeCredentials {
  server: string;
  caPem?: string;
  clientCertPem?: string;
  clientKeyPem?: string;
  /** The namespace of the service account (in cluster) or of the kubeconfig context. */
  namespace?: string;
  /** Where the credentials came from, for logs. */
  source: string;
  /** The bearer token, re-read when stale; `undefined` with client-certificate auth. */
  token(): Promise<string | undefined>;
  /** Forces a re-read (after a 401); resolves to whether the token changed. */
  refreshToken(): Promise<boolean>;
}

export interface CredentialOptions {
  serviceAccountDir: string;
  getEnv: (name: string) => string | undefined;
  clock?: () => number;
}

export async function loadCredentials(options: CredentialOptions): Promise<KubeCredentials> {
  const host = options.getEnv("KUBERNETES_SERVICE_HOST");
  if (host) return await inClusterCredentials(host, options);
  const kubeconfig = options.getEnv("KUBECONFIG");
  if (kubeconfig) return await kubeconfigCredentials(kubeconfig.split(":")[0], options);
  throw new ConfigError(
    "no Kubernetes credentials: KUBERNETES_SERVICE_HOST is not set (not in a cluster) and KUBECONFIG " +
      "names no file; run with --no-operation to serve without Kubernetes",
  );
}

async function inClusterCredentials(host: string, options: CredentialOptions): Promise<KubeCredentials> {
  const port = options.getEnv("KUBERNETES_SERVICE_PORT") || "443";
  const dir = options.serviceAccountDir.replace(/\/+$/, "");
  const hostPart = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
  const caPem = await _readOptional(`${dir}/ca.crt`);
  if (!caPem) throw new ConfigError(`in-cluster credentials: ${dir}/ca.crt is missing`);
  const namespace = (await _readOptional(`${dir}/namespace`))?.trim();
  const tokens = new _TokenFile(`${dir}/token`, options.clock ?? Date.now);
  await tokens.read(); // fail at start, not at the first request
  return {
    server: `https://${hostPart}:${port}`,
    caPem,
    namespace,
    source: `service account ${dir}`,
    token: () => tokens.get(),
    refreshToken: () => tokens.refresh(),
  };
}

async function kubeconfigCredentials(path: string, options: CredentialOptions): Promise<KubeCredentials> {
  let doc: Record<string, unknown>;
  try {
    // Loaded only for a kubeconfig (in a pod there is none): it costs memory otherwise.
    const { parse: parseYaml } = await import("yaml");
    doc = parseYaml(await Deno.readTextFile(path)) as Record<string, unknown>;
  } catch (error) {
    throw new ConfigError(`KUBECONFIG ${path}: ${(error as Error).message}`, { cause: error });
  }
  const named = (list: unknown, name: unknown) =>
    (Array.isArray(list) ? list : []).find((e) => e?.name === name) as
      | Record<string, Record<string, string>>
      | undefined;
  const context = named(doc.contexts, doc["current-context"])?.context;
  if (!context) throw new ConfigError(`KUBECONFIG ${path}: no current-context`);
  const cluster = named(doc.clusters, context.cluster)?.cluster;
  const user = named(doc.users, context.user)?.user ?? {};
  if (!cluster?.server) throw new ConfigError(`KUBECONFIG ${path}: cluster ${context.cluster} has no server`);
  if ("exec" in user || "auth-provider" in user) {
    throw new ConfigError(
      `KUBECONFIG ${path}: exec and auth-provider users are not supported; use a token or client certificate`,
    );
  }
  const pem = async (data?: string, file?: string) =>
    data
      ? new TextDecoder().decode(Uint8Array.from(atob(data), (c) => c.charCodeAt(0)))
      : file
      ? await Deno.readTextFile(file)
      : undefined;
  const tokens = user.tokenFile ? new _TokenFile(user.tokenFile, options.clock ?? Date.now) : undefined;
  if (tokens) await tokens.read();
  return {
    server: cluster.server.replace(/\/+$/, ""),
    caPem: await pem(cluster["certificate-authority-data"], cluster["certificate-authority"]),
    clientCertPem: await pem(user["client-certificate-data"], user["client-certificate"]),
    clientKeyPem: await pem(user["client-key-data"], user["client-key"]),
    namespace: context.namespace,
    source: `kubeconfig ${path}`,
    token: () => tokens ? tokens.get() : Promise.resolve(user.token),
    refreshToken: () => tokens ? tokens.refresh() : Promise.resolve(false),
  };
}

/** A token file with a cached copy that expires after TOKEN_MAX_AGE_MS. */
class _TokenFile {
  #value?: string;
  #readAt = 0;
  constructor(readonly path: string, readonly clock: () => number) {}

  async read(): Promise<string> {
    let text: string;
    try {
      text = (await Deno.readTextFile(this.path)).trim();
    } catch (error) {
      throw new ConfigError(
        `cannot read the service-account token ${this.path}: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
    if (!text) throw new ConfigError(`the service-account token ${this.path} is empty`);
    this.#value = text;
    this.#readAt = this.clock();
    return text;
  }

  async get(): Promise<string> {
    if (this.#value === undefined || this.clock() - this.#readAt > TOKEN_MAX_AGE_MS) return await this.read();
    return this.#value;
  }

  async refresh(): Promise<boolean> {
    const before = this.#value;
    return (await this.read()) !== before;
  }
}

async function _readOptional(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw new ConfigError(`cannot read ${path}: ${(error as Error).message}`, { cause: error });
  }
}

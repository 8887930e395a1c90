/**
 * envtest-style Kubernetes API server for tests: a private etcd + a real kube-apiserver
 * (RBAC on, static admin token, ServiceAccount token issuing, CRDs installed) on loopback.
 *
 *   const kube = await startKubeCluster();
 *   try { ... kube.request("GET", "/apis/nvidia.com/v1alpha1/namespaces/x/dynamographdeployments") ... }
 *   finally { await kube.stop(); }
 *
 * Binaries: kube-apiserver from $KUBE_APISERVER_BIN or <repo>/.cache/bin/kube-apiserver (built by
 * scripts/build_kube_apiserver.sh when missing, unless `build: false`, in which case it fails
 * loudly); etcd from $ETCD_BIN or `etcd` on PATH (/usr/bin/etcd, Debian package `etcd-server`).
 *
 * Permissions: --allow-run (kube-apiserver, etcd, bash for the build script and the watchdog),
 * --allow-net=127.0.0.1, --allow-read, --allow-write (temp dirs, files written for tests),
 * --allow-env (KUBE_APISERVER_BIN, ETCD_BIN, PATH, TMPDIR, and LOG_TOKENS,
 * LOG_STREAM which npm:yaml reads). Narrowest set that passes:
 *   --allow-run=bash,etcd,.cache/bin/kube-apiserver --allow-net=127.0.0.1 --allow-read --allow-write
 *   --allow-env=KUBE_APISERVER_BIN,ETCD_BIN,PATH,TMPDIR,LOG_TOKENS,LOG_STREAM
 *
 * Not running: kube-controller-manager / scheduler. So no namespace finalization (deleted
 * namespaces stay Terminating), no garbage collection of owner-referenced objects, no default
 * ServiceAccount per namespace, no pods actually run. The ServiceAccount admission plugin is
 * disabled (like envtest) so Pods can be created without a `default` ServiceAccount.
 */
import { parseAllDocuments, stringify as yamlStringify } from "yaml"; // npm:yaml@2 (deno.json import map)

// ----------------------------------------------------------------------------------- paths

const HERE = new URL(".", import.meta.url);
/** Repository root (this file is <repo>/tests/support/kube_cluster.ts). */
export const REPO_ROOT: string = decodeURIComponent(new URL("../../", HERE).pathname).replace(/\/$/, "");
export const BUILD_SCRIPT = `${REPO_ROOT}/scripts/build_kube_apiserver.sh`;
export const DEFAULT_APISERVER_BIN = `${REPO_ROOT}/.cache/bin/kube-apiserver`;
/** Project-owned reduced DGD CRD serving v1alpha1 (storage) + v1beta1, conversion None. */
export const REDUCED_DGD_CRD = `${REPO_ROOT}/tests/fixtures/crds/dgd_v1alpha1_v1beta1.yaml`;

/** Upstream's CRDs, kept verbatim in the repository (deploy/crds/README.md names their source). */
export const UPSTREAM_CRD_DIR = `${REPO_ROOT}/deploy/crds`;
export const upstreamDgdCrd = (): string => `${UPSTREAM_CRD_DIR}/nvidia.com_dynamographdeployments.yaml`;
export const upstreamDgdsaCrd = (): string =>
  `${UPSTREAM_CRD_DIR}/nvidia.com_dynamographdeploymentscalingadapters.yaml`;
export const upstreamDwmCrd = (): string => `${UPSTREAM_CRD_DIR}/nvidia.com_dynamoworkermetadatas.yaml`;

// ----------------------------------------------------------------------------------- types

export interface KubeClusterOptions {
  /**
   * Which DGD CRD to install: "reduced" (default) = tests/fixtures/crds/dgd_v1alpha1_v1beta1.yaml
   * (v1alpha1 + v1beta1); "upstream-v1alpha1" = deploy/crds/nvidia.com_dynamographdeployments.yaml
   * verbatim (v1alpha1 only); "none" = no DGD CRD.
   */
  dgdCrd?: "reduced" | "upstream-v1alpha1" | "none";
  /** Install deploy/crds/nvidia.com_dynamographdeploymentscalingadapters.yaml verbatim (default true). */
  dgdsaCrd?: boolean;
  /** Further CRD manifest files to install (e.g. upstreamDwmCrd()). */
  extraCrdFiles?: string[];
  /** Timeout for each readiness wait (etcd, apiserver /readyz, CRDs Established). Default 90 s. */
  readyTimeoutMs?: number;
  /** Run scripts/build_kube_apiserver.sh when the binary is missing (default true). */
  build?: boolean;
  apiserverBin?: string;
  etcdBin?: string;
  /** Extra kube-apiserver flags (appended; later flags win). */
  extraApiserverArgs?: string[];
  /** kube-apiserver --v (default 1). */
  verbosity?: number;
  /** Echo apiserver/etcd output to this process' stderr as well (default false). */
  echoLogs?: boolean;
}

export interface KubeResponse {
  status: number;
  ok: boolean;
  headers: Headers;
  text: string;
  /** Parsed JSON body (undefined if the body is not JSON). */
  // deno-lint-ignore no-explicit-any
  json: any;
}

export interface KubeCluster {
  /** https://127.0.0.1:PORT */
  url: string;
  host: string;
  port: number;
  /** PEM of the CA that signed the serving certificate (the chain from --cert-dir). */
  caPem: string;
  /** Path of a file holding caPem. */
  caFile: string;
  /** Static bearer token of user "admin" in group system:masters. */
  adminToken: string;
  etcdUrl: string;
  /** Temporary directory holding certs, keys, logs (removed by stop()). */
  dir: string;
  /** Request as admin; body objects are JSON-encoded. Default content type: application/json
   * (application/merge-patch+json for PATCH). The body is always fully read. */
  request(method: string, path: string, body?: unknown, contentType?: string): Promise<KubeResponse>;
  /** Same as request() but with the given bearer token (null = anonymous). */
  requestAs(
    token: string | null,
    method: string,
    path: string,
    body?: unknown,
    contentType?: string,
  ): Promise<KubeResponse>;
  /** Creates a namespace (ok if it already exists). */
  createNamespace(ns: string): Promise<void>;
  /** Creates a ServiceAccount (ok if it already exists). */
  createServiceAccount(ns: string, name: string): Promise<void>;
  /** TokenRequest for ns/sa (the ServiceAccount is created if missing). expirationSeconds >= 600. */
  createServiceAccountToken(
    ns: string,
    sa: string,
    opts?: { expirationSeconds?: number; audiences?: string[] },
  ): Promise<string>;
  /** Writes `token`, `ca.crt`, `namespace` into dir like /var/run/secrets/kubernetes.io/serviceaccount. */
  writeServiceAccountDir(dir: string, ns: string, token: string): Promise<string>;
  /** Writes a kubeconfig (context "envtest") using the token; returns the path. */
  kubeconfig(path: string, token: string, namespace?: string): Promise<string>;
  /** KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT as a pod would see them. */
  inClusterEnv(): Record<string, string>;
  /** Installs CRDs from a manifest file and waits until they are Established and served. */
  installCrdFile(path: string): Promise<string[]>;
  apiserverLogs(): string;
  etcdLogs(): string;
  stop(): Promise<void>;
}

// ------------------------------------------------------------------------------- helpers

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function tailLines(text: string, n: number): string {
  const lines = text.split("\n");
  return lines.slice(Math.max(0, lines.length - n - 1)).join("\n");
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

function findOnPath(name: string): string | undefined {
  for (const d of (Deno.env.get("PATH") ?? "/usr/local/bin:/usr/bin:/bin").split(":")) {
    if (d && exists(`${d}/${name}`)) return `${d}/${name}`;
  }
  return undefined;
}

/** Picks n distinct free loopback ports (listeners are held until all are chosen). */
function freePorts(n: number): number[] {
  const ls = Array.from({ length: n }, () => Deno.listen({ hostname: "127.0.0.1", port: 0 }));
  const ports = ls.map((l) => (l.addr as Deno.NetAddr).port);
  ls.forEach((l) => l.close());
  return ports;
}

function pem(label: string, der: ArrayBuffer): string {
  const b64 = btoa(String.fromCharCode(...new Uint8Array(der)));
  return `-----BEGIN ${label}-----\n${b64.match(/.{1,64}/g)!.join("\n")}\n-----END ${label}-----\n`;
}

function randomHex(bytes: number): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, "0"))
    .join("");
}

/** A child process whose stdout+stderr go to a log file (and a bounded in-memory tail). */
class ManagedProcess {
  readonly child: Deno.ChildProcess;
  readonly done: Promise<void>;
  exited = false;
  exitCode: number | null = null;
  #tail = "";
  #pumps: Promise<void>;
  #file: Deno.FsFile;

  constructor(readonly name: string, cmd: string, args: string[], readonly logPath: string, echo: boolean) {
    this.#file = Deno.openSync(logPath, { write: true, create: true, append: true });
    this.child = new Deno.Command(cmd, { args, stdin: "null", stdout: "piped", stderr: "piped" }).spawn();
    const pump = async (s: ReadableStream<Uint8Array>) => {
      const dec = new TextDecoder();
      for await (const chunk of s) {
        this.#file.writeSync(chunk);
        if (echo) Deno.stderr.writeSync(chunk);
        this.#tail = (this.#tail + dec.decode(chunk, { stream: true })).slice(-64 * 1024);
      }
    };
    this.#pumps = Promise.all([pump(this.child.stdout), pump(this.child.stderr)]).then(() => {});
    this.done = this.child.status.then(async (st) => {
      this.exited = true;
      this.exitCode = st.code;
      await this.#pumps.catch(() => {});
      this.#file.close();
    });
  }

  get pid(): number {
    return this.child.pid;
  }

  logs(): string {
    try {
      return Deno.readTextFileSync(this.logPath);
    } catch {
      return this.#tail;
    }
  }

  tail(n = 60): string {
    return tailLines(this.#tail, n);
  }

  async stop(graceMs = 5000): Promise<void> {
    if (!this.exited) {
      try {
        this.child.kill("SIGTERM");
      } catch { /* already gone */ }
      const t = setTimeout(() => {
        try {
          this.child.kill("SIGKILL");
        } catch { /* already gone */ }
      }, graceMs);
      await this.done;
      clearTimeout(t);
    } else {
      await this.done;
    }
  }
}

// ------------------------------------------------------------------------ binary lookup

/** Returns the kube-apiserver binary path, building it if needed (never skips silently). */
export async function ensureKubeApiserver(opts: { bin?: string; build?: boolean } = {}): Promise<string> {
  const bin = opts.bin ?? Deno.env.get("KUBE_APISERVER_BIN") ?? DEFAULT_APISERVER_BIN;
  if (exists(bin)) return bin;
  if (opts.build === false || bin !== DEFAULT_APISERVER_BIN) {
    throw new Error(
      `kube-apiserver binary not found at ${bin}. Build it with: bash ${BUILD_SCRIPT} ` +
        `(needs Go and the Go module proxy), or set KUBE_APISERVER_BIN.`,
    );
  }
  console.error(`[kube_cluster] ${bin} missing: running ${BUILD_SCRIPT} (can take many minutes)...`);
  const out = await new Deno.Command("bash", { args: [BUILD_SCRIPT], stdout: "inherit", stderr: "inherit" })
    .output();
  if (!out.success || !exists(bin)) {
    throw new Error(
      `scripts/build_kube_apiserver.sh failed (exit ${out.code}); kube-apiserver unavailable at ${bin}`,
    );
  }
  return bin;
}

function findEtcd(explicit?: string): string {
  const bin = explicit ?? Deno.env.get("ETCD_BIN") ?? findOnPath("etcd") ??
    (exists("/usr/bin/etcd") ? "/usr/bin/etcd" : undefined);
  if (!bin || !exists(bin)) {
    throw new Error(`etcd binary not found (set ETCD_BIN, or 'apt-get install etcd-server')`);
  }
  return bin;
}

// ------------------------------------------------------------------------------- cluster

const READY_POLL_MS = 250;

export async function startKubeCluster(opts: KubeClusterOptions = {}): Promise<KubeCluster> {
  const timeoutMs = opts.readyTimeoutMs ?? 90_000;
  const apiserverBin = await ensureKubeApiserver({ bin: opts.apiserverBin, build: opts.build });
  const etcdBin = findEtcd(opts.etcdBin);

  const dir = await Deno.makeTempDir({ prefix: "kube-cluster-" });
  // etcd 3.4 has no --unsafe-no-fsync: keep its data on tmpfs when available.
  const etcdDir = exists("/dev/shm")
    ? await Deno.makeTempDir({ dir: "/dev/shm", prefix: "kube-cluster-etcd-" })
    : `${dir}/etcd`;

  const procs: ManagedProcess[] = [];
  let watchdog: Deno.ChildProcess | undefined;
  let client: Deno.HttpClient | undefined;
  let stopped = false;
  const pidFile = `${dir}/pids`;

  const killAllSync = () => {
    for (const p of procs) {
      if (!p.exited) {
        try {
          Deno.kill(p.pid, "SIGKILL");
        } catch { /* gone */ }
      }
    }
  };
  const onUnload = () => killAllSync();
  globalThis.addEventListener("unload", onUnload);

  const stop = async () => {
    if (stopped) return;
    stopped = true;
    globalThis.removeEventListener("unload", onUnload);
    // apiserver first, then etcd.
    for (const p of [...procs].reverse()) await p.stop();
    if (watchdog) {
      try {
        watchdog.kill("SIGKILL");
      } catch { /* gone */ }
      await watchdog.status;
    }
    client?.close();
    for (const d of [etcdDir, dir]) await Deno.remove(d, { recursive: true }).catch(() => {});
  };

  const registerPid = (p: ManagedProcess) => {
    procs.push(p);
    Deno.writeTextFileSync(pidFile, procs.map((x) => x.pid).join(" ") + "\n");
  };

  try {
    const [etcdClientPort, etcdPeerPort, apiPort] = freePorts(3);
    const etcdUrl = `http://127.0.0.1:${etcdClientPort}`;

    // Watchdog: if this Deno process dies without stop(), kill our children and remove temp dirs.
    Deno.writeTextFileSync(pidFile, "\n");
    watchdog = new Deno.Command("bash", {
      args: [
        "-c",
        'while kill -0 "$1" 2>/dev/null; do sleep 1; done; kill -9 $(cat "$2") 2>/dev/null; rm -rf "$3" "$4"',
        "kube-cluster-watchdog",
        String(Deno.pid),
        pidFile,
        dir,
        etcdDir,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();

    // ---------------------------------------------------------------- etcd
    const etcd = new ManagedProcess(
      "etcd",
      etcdBin,
      [
        "--name=default",
        `--data-dir=${etcdDir}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
        `--initial-cluster=default=http://127.0.0.1:${etcdPeerPort}`,
        "--initial-cluster-state=new",
        "--logger=zap",
        "--log-outputs=stderr",
      ],
      `${dir}/etcd.log`,
      opts.echoLogs ?? false,
    );
    registerPid(etcd);
    await waitFor("etcd /health", timeoutMs, etcd, async () => {
      const r = await fetch(`${etcdUrl}/health`).catch(() => undefined);
      if (!r) return false;
      const t = await r.text();
      return r.ok && t.includes('"health":"true"');
    });

    // ------------------------------------------------- apiserver credentials
    const adminToken = randomHex(24);
    await Deno.writeTextFile(`${dir}/tokens.csv`, `${adminToken},admin,admin-uid,"system:masters"\n`);
    const kp = await crypto.subtle.generateKey(
      {
        name: "RSASSA-PKCS1-v1_5",
        modulusLength: 2048,
        publicExponent: new Uint8Array([1, 0, 1]),
        hash: "SHA-256",
      },
      true,
      ["sign", "verify"],
    );
    await Deno.writeTextFile(
      `${dir}/sa.key`,
      pem("PRIVATE KEY", await crypto.subtle.exportKey("pkcs8", kp.privateKey)),
    );
    await Deno.writeTextFile(
      `${dir}/sa.pub`,
      pem("PUBLIC KEY", await crypto.subtle.exportKey("spki", kp.publicKey)),
    );
    await Deno.mkdir(`${dir}/certs`);

    // ---------------------------------------------------------- apiserver
    const apiArgs = [
      `--etcd-servers=${etcdUrl}`,
      "--bind-address=127.0.0.1",
      "--advertise-address=127.0.0.1",
      `--secure-port=${apiPort}`,
      `--cert-dir=${dir}/certs`, // self-signed CA + serving cert generated here
      `--token-auth-file=${dir}/tokens.csv`,
      "--authorization-mode=RBAC",
      "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
      `--service-account-key-file=${dir}/sa.pub`,
      `--service-account-signing-key-file=${dir}/sa.key`,
      "--service-cluster-ip-range=10.0.0.0/24",
      // no endpoints for the default/kubernetes Service (127.0.0.1 is rejected as a loopback address)
      "--endpoint-reconciler-type=none",
      "--disable-admission-plugins=ServiceAccount",
      "--allow-privileged=true",
      "--profiling=false",
      `--v=${opts.verbosity ?? 1}`,
      ...(opts.extraApiserverArgs ?? []),
    ];
    const api = new ManagedProcess(
      "kube-apiserver",
      apiserverBin,
      apiArgs,
      `${dir}/kube-apiserver.log`,
      opts.echoLogs ?? false,
    );
    registerPid(api);

    // The serving chain (leaf + self-signed CA) appears in --cert-dir before the port opens.
    const crtPath = `${dir}/certs/apiserver.crt`;
    // Written with one WriteFile: a reader may still catch it created but not yet (fully)
    // written, so it counts as there once it ends with a whole PEM block.
    const whole = (): boolean =>
      exists(crtPath) && /-----END CERTIFICATE-----\s*$/.test(Deno.readTextFileSync(crtPath));
    await waitFor("kube-apiserver serving certificate", timeoutMs, api, () => Promise.resolve(whole()));
    const chain = Deno.readTextFileSync(crtPath);
    const blocks = chain.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
    if (blocks.length === 0) throw new Error(`no certificate in ${crtPath}`);
    // Trust the CA (last block); fall back to everything if the chain has a single cert.
    const caPem = blocks.length > 1 ? blocks.slice(1).join("") : blocks.join("");
    const caFile = `${dir}/ca.crt`;
    await Deno.writeTextFile(caFile, caPem);
    client = Deno.createHttpClient({ caCerts: blocks.length > 1 ? blocks.slice(1) : blocks });
    const httpClient = client;

    const url = `https://127.0.0.1:${apiPort}`;
    const requestAs = async (
      token: string | null,
      method: string,
      path: string,
      body?: unknown,
      contentType?: string,
    ): Promise<KubeResponse> => {
      const headers: Record<string, string> = { Accept: "application/json" };
      if (token) headers.Authorization = `Bearer ${token}`;
      let payload: BodyInit | undefined;
      if (body !== undefined) {
        payload = typeof body === "string" || body instanceof Uint8Array
          ? body as BodyInit
          : JSON.stringify(body);
        headers["Content-Type"] = contentType ??
          (method.toUpperCase() === "PATCH" ? "application/merge-patch+json" : "application/json");
      }
      const r = await fetch(`${url}${path}`, { method, headers, body: payload, client: httpClient });
      const text = await r.text();
      let json: unknown = undefined;
      if ((r.headers.get("content-type") ?? "").includes("json")) {
        try {
          json = JSON.parse(text);
        } catch { /* not json */ }
      }
      return { status: r.status, ok: r.ok, headers: r.headers, text, json };
    };
    const request = (method: string, path: string, body?: unknown, contentType?: string) =>
      requestAs(adminToken, method, path, body, contentType);

    let lastReadyz = "";
    await waitFor("kube-apiserver /readyz", timeoutMs, api, async () => {
      try {
        const r = await request("GET", "/readyz?verbose");
        lastReadyz = r.text;
        return r.status === 200;
      } catch (e) {
        lastReadyz = String(e);
        return false;
      }
    }, () => `last /readyz: ${tailLines(lastReadyz, 15)}`);

    const expectOk = (what: string, r: KubeResponse, allow409 = false) => {
      if (r.ok || (allow409 && r.status === 409)) return;
      throw new Error(`${what}: HTTP ${r.status}: ${r.text.slice(0, 2000)}`);
    };

    const installCrdFile = async (path: string): Promise<string[]> => {
      const docs = parseAllDocuments(await Deno.readTextFile(path));
      // deno-lint-ignore no-explicit-any
      const crds: any[] = [];
      for (const d of Array.isArray(docs) ? docs : [docs]) {
        if (d.errors?.length) throw new Error(`YAML error in ${path}: ${d.errors[0].message}`);
        const o = d.toJS({ maxAliasCount: -1 });
        if (o && o.kind === "CustomResourceDefinition") crds.push(o);
      }
      if (crds.length === 0) throw new Error(`no CustomResourceDefinition in ${path}`);
      for (const crd of crds) {
        expectOk(
          `create CRD ${crd.metadata.name} from ${path}`,
          await request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd),
        );
      }
      for (const crd of crds) {
        const name = crd.metadata.name;
        let last = "";
        await waitFor(`CRD ${name} Established`, timeoutMs, api, async () => {
          const r = await request("GET", `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`);
          // deno-lint-ignore no-explicit-any
          const conds: any[] = r.json?.status?.conditions ?? [];
          last = JSON.stringify(conds);
          const ok = (t: string) => conds.some((c) => c.type === t && c.status === "True");
          return ok("Established") && ok("NamesAccepted");
        }, () => `conditions: ${last}`);
        // Established can precede the handler being reachable by a moment: probe each served version.
        for (const v of crd.spec.versions.filter((v: { served: boolean }) => v.served)) {
          const p = `/apis/${crd.spec.group}/${v.name}/${crd.spec.names.plural}?limit=1`;
          await waitFor(`GET ${p}`, timeoutMs, api, async () => (await request("GET", p)).status === 200);
        }
      }
      return crds.map((c) => c.metadata.name);
    };

    const dgd = opts.dgdCrd ?? "reduced";
    const crdFiles: string[] = [];
    if (dgd === "reduced") crdFiles.push(REDUCED_DGD_CRD);
    else if (dgd === "upstream-v1alpha1") crdFiles.push(upstreamDgdCrd());
    if (opts.dgdsaCrd ?? true) crdFiles.push(upstreamDgdsaCrd());
    crdFiles.push(...(opts.extraCrdFiles ?? []));
    for (const f of crdFiles) await installCrdFile(f);

    const createServiceAccount = async (ns: string, name: string) => {
      expectOk(
        `create ServiceAccount ${ns}/${name}`,
        await request("POST", `/api/v1/namespaces/${ns}/serviceaccounts`, {
          apiVersion: "v1",
          kind: "ServiceAccount",
          metadata: { name },
        }),
        true,
      );
    };

    const cluster: KubeCluster = {
      url,
      host: "127.0.0.1",
      port: apiPort,
      caPem,
      caFile,
      adminToken,
      etcdUrl,
      dir,
      request,
      requestAs,
      async createNamespace(ns: string) {
        expectOk(
          `create namespace ${ns}`,
          await request("POST", "/api/v1/namespaces", {
            apiVersion: "v1",
            kind: "Namespace",
            metadata: { name: ns },
          }),
          true,
        );
      },
      createServiceAccount,
      async createServiceAccountToken(ns, sa, o = {}) {
        await createServiceAccount(ns, sa);
        const spec: Record<string, unknown> = {};
        if (o.expirationSeconds !== undefined) spec.expirationSeconds = o.expirationSeconds;
        if (o.audiences) spec.audiences = o.audiences;
        const r = await request("POST", `/api/v1/namespaces/${ns}/serviceaccounts/${sa}/token`, {
          apiVersion: "authentication.k8s.io/v1",
          kind: "TokenRequest",
          spec,
        });
        expectOk(`TokenRequest ${ns}/${sa}`, r);
        const token = r.json?.status?.token;
        if (typeof token !== "string" || !token) {
          throw new Error(`TokenRequest ${ns}/${sa}: no token in ${r.text}`);
        }
        return token;
      },
      async writeServiceAccountDir(d: string, ns: string, token: string) {
        await Deno.mkdir(d, { recursive: true });
        await Deno.writeTextFile(`${d}/token`, token);
        await Deno.writeTextFile(`${d}/ca.crt`, caPem);
        await Deno.writeTextFile(`${d}/namespace`, ns);
        return d;
      },
      async kubeconfig(path: string, token: string, namespace?: string) {
        const cfg = {
          apiVersion: "v1",
          kind: "Config",
          clusters: [{
            name: "envtest",
            cluster: { server: url, "certificate-authority-data": btoa(caPem) },
          }],
          users: [{ name: "envtest-user", user: { token } }],
          contexts: [{
            name: "envtest",
            context: { cluster: "envtest", user: "envtest-user", ...(namespace ? { namespace } : {}) },
          }],
          "current-context": "envtest",
        };
        await Deno.writeTextFile(path, yamlStringify(cfg));
        return path;
      },
      inClusterEnv: () => ({
        KUBERNETES_SERVICE_HOST: "127.0.0.1",
        KUBERNETES_SERVICE_PORT: String(apiPort),
      }),
      installCrdFile,
      apiserverLogs: () => api.logs(),
      etcdLogs: () => etcd.logs(),
      stop,
    };
    return cluster;
  } catch (e) {
    await stop();
    throw e;
  }
}

/** Polls `check` until true; fails early (with the log tail) if `proc` exits, or on timeout. */
async function waitFor(
  what: string,
  timeoutMs: number,
  proc: ManagedProcess,
  check: () => Promise<boolean>,
  extra?: () => string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    if (proc.exited) {
      throw new Error(
        `${proc.name} exited (code ${proc.exitCode}) while waiting for ${what}. Log tail (${proc.logPath}):\n` +
          proc.tail(60),
      );
    }
    if (await check()) return;
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}.` + (extra ? ` ${extra()}` : "") +
          `\n${proc.name} log tail (${proc.logPath}):\n${proc.tail(60)}`,
      );
    }
    await sleep(READY_POLL_MS);
  }
}
